resource "azurerm_kubernetes_cluster" "main" {
  name                = "aks-${var.name}"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  dns_prefix          = var.name
  kubernetes_version  = var.kubernetes_version
  sku_tier            = var.aks_sku_tier

  # Patch releases and node images arrive without anyone remembering to apply them; the PDB
  # in the kustomize base keeps predictd serving while nodes are drained.
  automatic_upgrade_channel = "patch"
  node_os_upgrade_channel   = "NodeImage"

  # Pods get Entra ID tokens for their service account (workload identity), so predictd
  # reaches Key Vault and Blob Storage without any stored credential.
  oidc_issuer_enabled       = true
  workload_identity_enabled = true

  # Sign-in through Entra ID only; no static admin kubeconfig exists to leak.
  local_account_disabled            = true
  role_based_access_control_enabled = true
  azure_active_directory_role_based_access_control {
    tenant_id              = data.azurerm_client_config.current.tenant_id
    azure_rbac_enabled     = true
    admin_group_object_ids = var.aks_admin_group_object_ids
  }

  #checkov:skip=CKV_AZURE_6:Authorized IP ranges are set below from the required variable api_server_authorized_ip_ranges (validated non-empty), which checkov cannot evaluate statically.
  api_server_access_profile {
    authorized_ip_ranges = var.api_server_authorized_ip_ranges
  }
  #checkov:skip=CKV_AZURE_115:Public API server restricted to api_server_authorized_ip_ranges with Entra ID sign-in; a private cluster would need CI runners and operators inside the network.
  #checkov:skip=CKV_AZURE_117:OS and data disks use platform-managed encryption; a disk encryption set (customer-managed key) is a key lifecycle this stack does not take on.

  azure_policy_enabled = true

  default_node_pool {
    name                         = "system"
    vm_size                      = var.system_node_vm_size
    vnet_subnet_id               = azurerm_subnet.aks.id
    auto_scaling_enabled         = true
    min_count                    = 1
    max_count                    = 3
    max_pods                     = 50
    os_disk_type                 = "Ephemeral"
    os_disk_size_gb              = 64
    only_critical_addons_enabled = true
    zones                        = ["1", "2", "3"]
    #checkov:skip=CKV_AZURE_227:Encryption at host needs the EncryptionAtHost feature registered on the subscription first; ephemeral OS disks already keep no OS data at rest on managed disks.
    upgrade_settings {
      max_surge = "33%"
    }
  }

  identity {
    type = "SystemAssigned"
  }

  network_profile {
    network_plugin = "azure"
    network_policy = "azure"
    service_cidr   = "10.41.0.0/16"
    dns_service_ip = "10.41.0.10"
  }

  # Key Vault Secrets Provider (Secrets Store CSI driver); rotation re-reads secrets every
  # two minutes so a rotated admin token reaches running pods.
  key_vault_secrets_provider {
    secret_rotation_enabled  = true
    secret_rotation_interval = "2m"
  }

  # Container Insights: logs and metrics to Log Analytics, authenticated with managed identity.
  oms_agent {
    log_analytics_workspace_id      = azurerm_log_analytics_workspace.main.id
    msi_auth_for_monitoring_enabled = true
  }

  tags = var.tags

  lifecycle {
    ignore_changes = [default_node_pool[0].node_count, kubernetes_version]
  }
}

# predictd runs here, not beside the system add-ons (the system pool takes critical add-ons
# only), so a busy model never starves CoreDNS or the CSI driver.
resource "azurerm_kubernetes_cluster_node_pool" "apps" {
  name                  = "apps"
  kubernetes_cluster_id = azurerm_kubernetes_cluster.main.id
  vm_size               = var.app_node_vm_size
  vnet_subnet_id        = azurerm_subnet.aks.id
  auto_scaling_enabled  = true
  min_count             = var.app_node_min_count
  max_count             = var.app_node_max_count
  max_pods              = 50
  os_disk_type          = "Ephemeral"
  os_disk_size_gb       = 128
  zones                 = ["1", "2", "3"]
  mode                  = "User"
  #checkov:skip=CKV_AZURE_227:Encryption at host needs the EncryptionAtHost feature registered on the subscription first; ephemeral OS disks already keep no OS data at rest on managed disks.
  upgrade_settings {
    max_surge = "33%"
  }
  tags = var.tags

  lifecycle {
    ignore_changes = [node_count]
  }
}
