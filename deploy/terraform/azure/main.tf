# One resource group holds the whole predictd stack, so it can be found, tagged and costed
# as one unit.
resource "azurerm_resource_group" "main" {
  name     = "rg-${var.name}"
  location = var.location
  tags     = var.tags
}

# A suffix keeps the globally unique names (ACR, Key Vault, storage) from colliding between
# two deployments that use the same prefix.
resource "random_string" "suffix" {
  length  = 5
  special = false
  upper   = false
}

locals {
  unique = "${var.name}${random_string.suffix.result}"
}

resource "azurerm_log_analytics_workspace" "main" {
  name                = "log-${var.name}"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = var.tags
}

# Workspace-based, so traces from the Azure Monitor OpenTelemetry exporter and the container
# logs from AKS land in one place and can be joined in one query.
resource "azurerm_application_insights" "main" {
  name                = "appi-${var.name}"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  workspace_id        = azurerm_log_analytics_workspace.main.id
  application_type    = "web"
  # Ingestion with Entra ID tokens only would need the exporter to hold a credential too; the
  # connection string (a secret output) is how the exporter is configured instead.
  local_authentication_disabled = false
  tags                          = var.tags
}
