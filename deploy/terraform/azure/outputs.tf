# What the kustomize overlay and the operator need; docs/deploy.md ("Azure") shows where each
# goes.
output "resource_group_name" {
  description = "Resource group holding the stack."
  value       = azurerm_resource_group.main.name
}

output "acr_login_server" {
  description = "Registry host for the image reference in the overlay (images: newName)."
  value       = azurerm_container_registry.main.login_server
}

output "aks_name" {
  description = "AKS cluster name for `az aks get-credentials`."
  value       = azurerm_kubernetes_cluster.main.name
}

output "key_vault_name" {
  description = "Key Vault name for the SecretProviderClass (keyvaultName)."
  value       = azurerm_key_vault.main.name
}

output "key_vault_uri" {
  description = "Key Vault URI."
  value       = azurerm_key_vault.main.vault_uri
}

output "workload_identity_client_id" {
  description = "Client id for the service account annotation azure.workload.identity/client-id and the SecretProviderClass clientID."
  value       = azurerm_user_assigned_identity.predictd.client_id
}

output "tenant_id" {
  description = "Entra ID tenant for the SecretProviderClass (tenantId)."
  value       = data.azurerm_client_config.current.tenant_id
}

output "artifact_url" {
  description = "PREDICTD_ARTIFACT_URL for the prod overlay's config.env (with AZURE_STORAGE_ACCOUNT_NAME = artifact_storage_account)."
  value       = "az://${azurerm_storage_container.artifacts.name}/models"
}

output "artifact_storage_account" {
  description = "Storage account of the artifact store: AZURE_STORAGE_ACCOUNT_NAME in the prod overlay's config.env."
  value       = azurerm_storage_account.artifacts.name
}

output "postgres_fqdn" {
  description = "Private DNS name of the PostgreSQL server (resolvable inside the virtual network only)."
  value       = azurerm_postgresql_flexible_server.main.fqdn
}

output "database_url_secret_name" {
  description = "Key Vault secret holding DATABASE_URL."
  value       = azurerm_key_vault_secret.database_url.name
}

output "admin_token_secret_name" {
  description = "Key Vault secret holding PREDICTD_ADMIN_TOKEN."
  value       = azurerm_key_vault_secret.admin_token.name
}

output "redis_url_secret_name" {
  description = "Key Vault secret holding REDIS_URL (rediss://, the TLS port, through the private endpoint)."
  value       = azurerm_key_vault_secret.redis_url.name
}

output "input_hash_key_secret_name" {
  description = "Key Vault secret holding PREDICTD_INPUT_HASH_KEY."
  value       = azurerm_key_vault_secret.input_hash_key.name
}

output "redis_hostname" {
  description = "Azure Cache for Redis host (resolves to the private endpoint inside the virtual network)."
  value       = azurerm_redis_cache.main.hostname
}

# The prod overlay's egress policy (deploy/k8s/overlays/prod/egress.yaml) allows PostgreSQL and
# Redis by these CIDRs; the suite checks the overlay against the defaults.
output "postgres_subnet_cidr" {
  description = "Subnet of PostgreSQL: the ipBlock of the prod overlay's egress rule for 5432."
  value       = one(azurerm_subnet.postgres.address_prefixes)
}

output "redis_subnet_cidr" {
  description = "Subnet of the Redis private endpoint: the ipBlock of the prod overlay's egress rule for 6380."
  value       = one(azurerm_subnet.redis.address_prefixes)
}

output "applicationinsights_connection_string" {
  description = "APPLICATIONINSIGHTS_CONNECTION_STRING for the Azure Monitor OpenTelemetry exporter."
  value       = azurerm_application_insights.main.connection_string
  sensitive   = true
}
