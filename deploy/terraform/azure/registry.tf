# The cluster pulls predictd's image from here with its kubelet identity (AcrPull), so the
# registry needs no admin user and no pull secret.
resource "azurerm_container_registry" "main" {
  name                = "acr${local.unique}"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  sku                 = "Standard"
  admin_enabled       = false
  #checkov:skip=CKV_AZURE_139:Public endpoint kept so CI and `az acr import` can push; pulls are authenticated with Entra ID and there is no admin user. Private endpoints need the Premium SKU.
  #checkov:skip=CKV_AZURE_163:Vulnerability scanning is Microsoft Defender for Containers, enabled per subscription, not on the registry resource.
  #checkov:skip=CKV_AZURE_164:Content trust (signed images) needs the Premium SKU; a cost choice.
  #checkov:skip=CKV_AZURE_165:Geo-replication needs the Premium SKU; a cost choice for a single-region deployment.
  #checkov:skip=CKV_AZURE_166:Quarantine needs the Premium SKU; a cost choice.
  #checkov:skip=CKV_AZURE_167:Retention of untagged manifests needs the Premium SKU; a cost choice.
  #checkov:skip=CKV_AZURE_233:Zone redundancy needs the Premium SKU; a cost choice.
  #checkov:skip=CKV_AZURE_237:Dedicated data endpoints need the Premium SKU; a cost choice.
  tags = var.tags
}

# Model artifacts (PREDICTD_ARTIFACT_URL=az://artifacts/models, the prod overlay's config.env;
# the suite checks the container name there), read and written by predictd's
# workload identity; shared keys are off, so only Entra ID tokens open it.
resource "azurerm_storage_account" "artifacts" {
  name                            = "st${local.unique}"
  location                        = azurerm_resource_group.main.location
  resource_group_name             = azurerm_resource_group.main.name
  account_tier                    = "Standard"
  account_replication_type        = "ZRS"
  min_tls_version                 = "TLS1_2"
  shared_access_key_enabled       = false
  allow_nested_items_to_be_public = false
  default_to_oauth_authentication = true
  #checkov:skip=CKV2_AZURE_1:Encrypted with Microsoft-managed keys; customer-managed keys would add a key lifecycle for artifacts that carry a sha256 check of their own.
  #checkov:skip=CKV2_AZURE_33:No private endpoint; the firewall below admits only the AKS subnet and operator_allowed_ips.
  #checkov:skip=CKV_AZURE_59:Public endpoint kept behind the firewall (default deny) so operators can upload a first model; see network_rules.
  #checkov:skip=CKV_AZURE_33:Queue service logging does not apply: no queues are used, only blobs.
  #checkov:skip=CKV_AZURE_206:ZRS survives a zone outage; geo-replication of artifacts that can be re-registered is a cost choice.
  #checkov:skip=CKV2_AZURE_41:Shared keys are disabled, so no SAS can be signed with them; there is no SAS expiration policy to set.

  network_rules {
    default_action             = "Deny"
    bypass                     = ["AzureServices"]
    ip_rules                   = [for ip in var.operator_allowed_ips : trimsuffix(ip, "/32")]
    virtual_network_subnet_ids = [azurerm_subnet.aks.id]
  }

  blob_properties {
    versioning_enabled = true
    delete_retention_policy {
      days = 30
    }
    container_delete_retention_policy {
      days = 30
    }
  }

  tags = var.tags
}

resource "azurerm_storage_container" "artifacts" {
  #checkov:skip=CKV2_AZURE_21:Blob reads are logged by the diagnostic setting below; the check wants azurerm_log_analytics_storage_insights, which needs the account key that is disabled here.
  name                  = "artifacts"
  storage_account_id    = azurerm_storage_account.artifacts.id
  container_access_type = "private"
}

# Who read, wrote or deleted which artifact, kept in Log Analytics beside the cluster's logs.
resource "azurerm_monitor_diagnostic_setting" "artifacts_blob" {
  name                       = "blob-to-log-analytics"
  target_resource_id         = "${azurerm_storage_account.artifacts.id}/blobServices/default"
  log_analytics_workspace_id = azurerm_log_analytics_workspace.main.id

  enabled_log {
    category = "StorageRead"
  }
  enabled_log {
    category = "StorageWrite"
  }
  enabled_log {
    category = "StorageDelete"
  }
}
