variable "subscription_id" {
  description = "Azure subscription to deploy into (azurerm 4 requires it to be explicit)."
  type        = string
  validation {
    condition     = can(regex("^[0-9a-fA-F-]{36}$", var.subscription_id))
    error_message = "subscription_id must be a subscription GUID."
  }
}

variable "name" {
  description = "Prefix of every resource name (lowercase letters and digits, 3-12 characters, as ACR, Key Vault and storage names allow)."
  type        = string
  default     = "predictd"
  validation {
    condition     = can(regex("^[a-z][a-z0-9]{2,11}$", var.name))
    error_message = "name must be 3-12 lowercase letters or digits, starting with a letter."
  }
}

variable "location" {
  description = "Azure region, e.g. westeurope."
  type        = string
  default     = "westeurope"
}

variable "tags" {
  description = "Tags put on every resource."
  type        = map(string)
  default     = { app = "predictd" }
}

variable "vnet_cidr" {
  description = "Address space of the virtual network; the subnets below must lie inside it."
  type        = string
  default     = "10.40.0.0/16"
  validation {
    condition     = can(cidrhost(var.vnet_cidr, 0))
    error_message = "vnet_cidr must be a CIDR block."
  }
}

variable "aks_subnet_cidr" {
  description = "Subnet of the AKS nodes and pods (Azure CNI gives every pod an address from it)."
  type        = string
  default     = "10.40.0.0/20"
  validation {
    condition     = can(cidrhost(var.aks_subnet_cidr, 0))
    error_message = "aks_subnet_cidr must be a CIDR block."
  }
}

variable "postgres_subnet_cidr" {
  description = "Subnet delegated to PostgreSQL Flexible Server (private access only)."
  type        = string
  default     = "10.40.16.0/24"
  validation {
    condition     = can(cidrhost(var.postgres_subnet_cidr, 0))
    error_message = "postgres_subnet_cidr must be a CIDR block."
  }
}

variable "redis_subnet_cidr" {
  description = "Subnet holding only the private endpoint of Azure Cache for Redis (the prod overlay's egress policy allows 6380 to it)."
  type        = string
  default     = "10.40.17.0/24"
  validation {
    condition     = can(cidrhost(var.redis_subnet_cidr, 0))
    error_message = "redis_subnet_cidr must be a CIDR block."
  }
}

variable "kubernetes_version" {
  description = "AKS Kubernetes version; null takes the region's default."
  type        = string
  default     = null
}

variable "aks_sku_tier" {
  description = "AKS control plane tier: Standard carries the uptime SLA, Free does not."
  type        = string
  default     = "Standard"
  validation {
    condition     = contains(["Free", "Standard", "Premium"], var.aks_sku_tier)
    error_message = "aks_sku_tier must be Free, Standard or Premium."
  }
}

variable "system_node_vm_size" {
  description = "VM size of the system node pool (needs a temporary disk of at least 64 GiB for the ephemeral OS disk)."
  type        = string
  default     = "Standard_D2ds_v5"
}

variable "app_node_vm_size" {
  description = "VM size of the node pool predictd runs on (needs a temporary disk of at least 64 GiB for the ephemeral OS disk)."
  type        = string
  default     = "Standard_D4ds_v5"
}

variable "app_node_min_count" {
  description = "Fewest nodes in the predictd node pool (the cluster autoscaler adds more)."
  type        = number
  default     = 2
  validation {
    condition     = var.app_node_min_count >= 1
    error_message = "app_node_min_count must be at least 1."
  }
}

variable "app_node_max_count" {
  description = "Most nodes in the predictd node pool."
  type        = number
  default     = 6
  validation {
    condition     = var.app_node_max_count >= 1 && var.app_node_max_count <= 100
    error_message = "app_node_max_count must be between 1 and 100."
  }
}

variable "api_server_authorized_ip_ranges" {
  description = "CIDR blocks allowed to reach the Kubernetes API server (your office, your CI runners)."
  type        = list(string)
  validation {
    condition     = length(var.api_server_authorized_ip_ranges) > 0 && alltrue([for c in var.api_server_authorized_ip_ranges : can(cidrhost(c, 0))])
    error_message = "api_server_authorized_ip_ranges must be a non-empty list of CIDR blocks."
  }
}

variable "aks_admin_group_object_ids" {
  description = "Entra ID groups whose members are cluster admins (local accounts are disabled)."
  type        = list(string)
  default     = []
}

variable "operator_allowed_ips" {
  description = "Public IPs or CIDR blocks of operators allowed through the Key Vault and artifact storage firewalls besides the AKS subnet; the machine running terraform must be one of them, since terraform writes the secrets."
  type        = list(string)
  default     = []
}

variable "postgres_version" {
  description = "PostgreSQL major version."
  type        = string
  default     = "16"
  validation {
    condition     = contains(["14", "15", "16", "17"], var.postgres_version)
    error_message = "postgres_version must be 14, 15, 16 or 17."
  }
}

variable "postgres_sku" {
  description = "PostgreSQL Flexible Server SKU, e.g. GP_Standard_D2ds_v5 (B_ burstable SKUs cannot use zone-redundant high availability)."
  type        = string
  default     = "GP_Standard_D2ds_v5"
}

variable "postgres_storage_mb" {
  description = "PostgreSQL storage in MiB (it can grow, never shrink)."
  type        = number
  default     = 65536
  validation {
    condition     = var.postgres_storage_mb >= 32768
    error_message = "postgres_storage_mb must be at least 32768."
  }
}

variable "postgres_backup_retention_days" {
  description = "Days of point-in-time restore for PostgreSQL."
  type        = number
  default     = 14
  validation {
    condition     = var.postgres_backup_retention_days >= 7 && var.postgres_backup_retention_days <= 35
    error_message = "postgres_backup_retention_days must be between 7 and 35."
  }
}

variable "postgres_high_availability" {
  description = "Run a zone-redundant standby for PostgreSQL (about doubles its cost)."
  type        = bool
  default     = true
}

variable "redis_sku" {
  description = "Azure Cache for Redis tier: Standard (a replica, SLA) or Premium (zones, persistence); Basic has no replica and no SLA."
  type        = string
  default     = "Standard"
  validation {
    condition     = contains(["Basic", "Standard", "Premium"], var.redis_sku)
    error_message = "redis_sku must be Basic, Standard or Premium."
  }
}

variable "redis_capacity" {
  description = "Azure Cache for Redis size within its tier (C0-C6 for Basic/Standard, P1-P5 for Premium)."
  type        = number
  default     = 1
  validation {
    condition     = var.redis_capacity >= 0 && var.redis_capacity <= 6
    error_message = "redis_capacity must be between 0 and 6."
  }
}

variable "database_name" {
  description = "Database predictd uses on the server."
  type        = string
  default     = "predictd"
}

variable "kubernetes_namespace" {
  description = "Namespace predictd runs in; the workload identity trusts its service account there."
  type        = string
  default     = "predictd"
}

variable "service_account_name" {
  description = "Kubernetes service account of the predictd pods (the kustomize overlay's)."
  type        = string
  default     = "predictd"
}

variable "log_retention_days" {
  description = "Days Log Analytics keeps container logs and metrics."
  type        = number
  default     = 90
  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 730
    error_message = "log_retention_days must be between 30 and 730."
  }
}
