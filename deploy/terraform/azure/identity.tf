# The identity predictd's pods act as: the service account in the kustomize overlay is
# annotated with its client id, and the federated credential below lets AKS's OIDC issuer vouch
# for exactly that service account in exactly that namespace.
resource "azurerm_user_assigned_identity" "predictd" {
  name                = "id-${var.name}"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  tags                = var.tags
}

resource "azurerm_federated_identity_credential" "predictd" {
  name                = "predictd-${var.kubernetes_namespace}"
  resource_group_name = azurerm_resource_group.main.name
  parent_id           = azurerm_user_assigned_identity.predictd.id
  issuer              = azurerm_kubernetes_cluster.main.oidc_issuer_url
  subject             = "system:serviceaccount:${var.kubernetes_namespace}:${var.service_account_name}"
  audience            = ["api://AzureADTokenExchange"]
}

# Read secrets (the CSI driver mounts them as this identity), nothing more: not list keys,
# not write.
resource "azurerm_role_assignment" "predictd_secrets_user" {
  scope                = azurerm_key_vault.main.id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_user_assigned_identity.predictd.principal_id
}

# Artifacts: the registry writes new model versions, every replica reads them.
resource "azurerm_role_assignment" "predictd_blob_contributor" {
  scope                = azurerm_storage_container.artifacts.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_user_assigned_identity.predictd.principal_id
}

# The kubelet pulls predictd's image from ACR with its own managed identity.
resource "azurerm_role_assignment" "kubelet_acr_pull" {
  scope                            = azurerm_container_registry.main.id
  role_definition_name             = "AcrPull"
  principal_id                     = azurerm_kubernetes_cluster.main.kubelet_identity[0].object_id
  skip_service_principal_aad_check = true
}

# With its own (system-assigned) identity and a subnet it did not create, AKS needs to manage
# that subnet's IP configurations and load balancer front ends; the CLI grants this implicitly,
# terraform does not.
resource "azurerm_role_assignment" "aks_network_contributor" {
  scope                = azurerm_subnet.aks.id
  role_definition_name = "Network Contributor"
  principal_id         = azurerm_kubernetes_cluster.main.identity[0].principal_id
}
