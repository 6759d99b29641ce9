# Provider versions are pinned so a plan made today is the plan made next month; bump them
# deliberately (and read the azurerm upgrade guide) rather than by accident. azurerm 4.42 is
# the floor: the first release that knows the Key Vault argument rbac_authorization_enabled.
terraform {
  required_version = ">= 1.6.0"

  # Remote state: the state holds every secret this stack generates (database password, Redis
  # access key, admin token, input hash key) in clear text, so keep it in a storage account of
  # its own with restricted access, never on a laptop or in git (*.tfstate is git-ignored).
  # Uncomment, fill in, and `terraform init -migrate-state` (docs/deploy.md, "Apply").
  # backend "azurerm" {
  #   resource_group_name  = "rg-tfstate"
  #   storage_account_name = "sttfstate00000"
  #   container_name       = "tfstate"
  #   key                  = "predictd.tfstate"
  #   use_azuread_auth     = true
  # }

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
