# Secrets predictd reads at runtime, mounted into the pods by the Key Vault CSI driver.
# Access is by Azure RBAC (no access policies), and a deleted vault or secret can be recovered
# for 90 days and never purged early.
resource "azurerm_key_vault" "main" {
  name                       = "kv-${local.unique}"
  location                   = azurerm_resource_group.main.location
  resource_group_name        = azurerm_resource_group.main.name
  tenant_id                  = data.azurerm_client_config.current.tenant_id
  sku_name                   = "standard"
  rbac_authorization_enabled = true
  purge_protection_enabled   = true
  soft_delete_retention_days = 90

  #checkov:skip=CKV_AZURE_189:Public endpoint kept (behind the firewall below) so terraform can write the secrets from the operator's machine; the AKS nodes reach it through a service endpoint.
  #checkov:skip=CKV2_AZURE_32:No private endpoint; the firewall admits only the AKS subnet and operator_allowed_ips. A private endpoint would also need the operator inside the network to apply.
  public_network_access_enabled = true
  network_acls {
    default_action             = "Deny"
    bypass                     = "AzureServices"
    ip_rules                   = var.operator_allowed_ips
    virtual_network_subnet_ids = [azurerm_subnet.aks.id]
  }

  tags = var.tags
}

# Whoever runs terraform writes the secrets; with RBAC authorization that needs a role.
resource "azurerm_role_assignment" "deployer_secrets_officer" {
  scope                = azurerm_key_vault.main.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = data.azurerm_client_config.current.object_id
}

resource "random_password" "admin_token" {
  length  = 48
  special = false
}

# The key of PREDICTD_STORE_INPUTS=hash (a keyed hash of stored inputs). Generated, never
# typed; replacing it makes old and new hashes incomparable, so rotate it deliberately.
resource "random_password" "input_hash_key" {
  length  = 48
  special = false
}

# Names are the SecretProviderClass's objectNames (deploy/k8s/components/azure-keyvault), which
# alias each to the variable predictd reads; a name missing here fails the pods' CSI mount. The
# suite cross-checks both lists.
#
# No expiration date: the CSI driver cannot read an expired secret, so an expiry would take
# predictd down at its next restart instead of prompting a rotation. Rotate by re-applying
# with `-replace=random_password.admin_token` (the driver polls for new versions).
resource "azurerm_key_vault_secret" "database_url" {
  #checkov:skip=CKV_AZURE_41:An expired secret cannot be read by the CSI driver, so an expiry would take predictd down; rotation is by re-apply (see docs/deploy.md).
  name         = "predictd-database-url"
  value        = local.database_url
  key_vault_id = azurerm_key_vault.main.id
  content_type = "text/plain; postgresql-url"
  tags         = var.tags
  depends_on   = [azurerm_role_assignment.deployer_secrets_officer]
}

resource "azurerm_key_vault_secret" "admin_token" {
  #checkov:skip=CKV_AZURE_41:An expired secret cannot be read by the CSI driver, so an expiry would take predictd down; rotation is by re-apply (see docs/deploy.md).
  name         = "predictd-admin-token"
  value        = random_password.admin_token.result
  key_vault_id = azurerm_key_vault.main.id
  content_type = "text/plain; bearer-token"
  tags         = var.tags
  depends_on   = [azurerm_role_assignment.deployer_secrets_officer]
}

resource "azurerm_key_vault_secret" "redis_url" {
  #checkov:skip=CKV_AZURE_41:An expired secret cannot be read by the CSI driver, so an expiry would take predictd down; rotation is by re-apply (see docs/deploy.md).
  name         = "predictd-redis-url"
  value        = local.redis_url
  key_vault_id = azurerm_key_vault.main.id
  content_type = "text/plain; redis-url"
  tags         = var.tags
  depends_on   = [azurerm_role_assignment.deployer_secrets_officer]
}

resource "azurerm_key_vault_secret" "input_hash_key" {
  #checkov:skip=CKV_AZURE_41:An expired secret cannot be read by the CSI driver, so an expiry would take predictd down; rotation is by re-apply (see docs/deploy.md).
  name         = "predictd-input-hash-key"
  value        = random_password.input_hash_key.result
  key_vault_id = azurerm_key_vault.main.id
  content_type = "text/plain; hmac-key"
  tags         = var.tags
  depends_on   = [azurerm_role_assignment.deployer_secrets_officer]
}
