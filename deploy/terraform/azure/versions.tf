# Provider versions are pinned so a plan made today is the plan made next month; bump them
# deliberately (and read the azurerm upgrade guide) rather than by accident. azurerm 4.42 is
# the floor: the first release that knows the Key Vault argument rbac_authorization_enabled.
terraform {
  required_version = ">= 1.6.0"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.42"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}

provider "azurerm" {
  # The Key Vault keeps purge protection on: destroying the stack must not purge it.
  features {
    key_vault {
      purge_soft_delete_on_destroy = false
    }
  }
  subscription_id = var.subscription_id
  # The artifact storage account has shared keys disabled: talk to its data plane with Entra ID.
  storage_use_azuread = true
}

data "azurerm_client_config" "current" {}
