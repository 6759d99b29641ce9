# The admin password is generated, never typed: it reaches predictd only inside the database
# URL secret in Key Vault. URL-safe characters only, so it needs no escaping in that URL.
resource "random_password" "postgres" {
  length           = 32
  special          = true
  override_special = "-_"
}

resource "azurerm_postgresql_flexible_server" "main" {
  name                = "psql-${local.unique}"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  version             = var.postgres_version
  sku_name            = var.postgres_sku
  storage_mb          = var.postgres_storage_mb
  auto_grow_enabled   = true

  #checkov:skip=CKV2_AZURE_57:Private access by VNet integration (delegated subnet + private DNS zone), which Azure offers instead of a private endpoint for a server created this way; there is no public endpoint either way.
  # Private access: reachable only from inside the virtual network, by the private DNS name.
  delegated_subnet_id           = azurerm_subnet.postgres.id
  private_dns_zone_id           = azurerm_private_dns_zone.postgres.id
  public_network_access_enabled = false

  administrator_login    = "predictd"
  administrator_password = random_password.postgres.result

  backup_retention_days = var.postgres_backup_retention_days
  #checkov:skip=CKV_AZURE_136:Geo-redundant backups are a cost choice (about double the backup storage); zone-redundant HA plus point-in-time restore in the region is the default here. Set geo_redundant_backup_enabled = true for cross-region recovery.
  geo_redundant_backup_enabled = false

  dynamic "high_availability" {
    for_each = var.postgres_high_availability ? [1] : []
    content {
      mode = "ZoneRedundant"
    }
  }

  tags = var.tags

  # Azure picks the zone at creation and may swap it on failover; terraform must not fight it.
  lifecycle {
    ignore_changes = [zone, high_availability[0].standby_availability_zone]
  }

  depends_on = [azurerm_private_dns_zone_virtual_network_link.postgres]
}

# TLS is required by the server, not merely offered: a client without TLS is refused.
resource "azurerm_postgresql_flexible_server_configuration" "require_secure_transport" {
  name      = "require_secure_transport"
  server_id = azurerm_postgresql_flexible_server.main.id
  value     = "on"
}

# Connection and disconnection logs, so a flood of connections from a misconfigured pool shows
# up in Log Analytics.
resource "azurerm_postgresql_flexible_server_configuration" "log_connections" {
  name      = "log_connections"
  server_id = azurerm_postgresql_flexible_server.main.id
  value     = "on"
}

resource "azurerm_postgresql_flexible_server_database" "predictd" {
  name      = var.database_name
  server_id = azurerm_postgresql_flexible_server.main.id
  charset   = "UTF8"
  collation = "en_US.utf8"
}

locals {
  # sslmode=require: predictd passes libpq's sslmode through (settings.DatabaseSettings.url).
  database_url = format(
    "postgresql://%s:%s@%s:5432/%s?sslmode=require",
    azurerm_postgresql_flexible_server.main.administrator_login,
    random_password.postgres.result,
    azurerm_postgresql_flexible_server.main.fqdn,
    azurerm_postgresql_flexible_server_database.predictd.name,
  )
}
