# Azure Cache for Redis: the prod overlay's PREDICTD_CACHE=redis (the shared prediction cache
# and rate limits). TLS only, on 6380, reached from the pods through a private endpoint in a
# subnet of its own; the prod overlay's egress policy allows 6380 to that subnet alone.
resource "azurerm_redis_cache" "main" {
  name                = "redis-${local.unique}"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  sku_name            = var.redis_sku
  family              = var.redis_sku == "Premium" ? "P" : "C"
  capacity            = var.redis_capacity

  # Never plaintext: the non-TLS port 6379 is closed and TLS below 1.2 refused.
  non_ssl_port_enabled = false
  minimum_tls_version  = "1.2"
  # Only the private endpoint below reaches it.
  public_network_access_enabled = false

  # predictd authenticates with the access key inside REDIS_URL (a Key Vault secret); redis-py
  # has no Entra ID token support built in.
  access_keys_authentication_enabled = true

  redis_configuration {}

  tags = var.tags
}

resource "azurerm_private_dns_zone" "redis" {
  name                = "privatelink.redis.cache.windows.net"
  resource_group_name = azurerm_resource_group.main.name
  tags                = var.tags
}

# Pods resolve the cache's public name to the private endpoint's address through this zone.
resource "azurerm_private_dns_zone_virtual_network_link" "redis" {
  name                  = "redis-${var.name}"
  resource_group_name   = azurerm_resource_group.main.name
  private_dns_zone_name = azurerm_private_dns_zone.redis.name
  virtual_network_id    = azurerm_virtual_network.main.id
  registration_enabled  = false
}

resource "azurerm_private_endpoint" "redis" {
  name                = "pe-${var.name}-redis"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  subnet_id           = azurerm_subnet.redis.id

  private_service_connection {
    name                           = "redis"
    private_connection_resource_id = azurerm_redis_cache.main.id
    subresource_names              = ["redisCache"]
    is_manual_connection           = false
  }

  private_dns_zone_group {
    name                 = "redis"
    private_dns_zone_ids = [azurerm_private_dns_zone.redis.id]
  }

  tags = var.tags
}

locals {
  # redis-py unquotes the password of a URL; the access key is base64 ("/", "+", "="), so it is
  # percent-encoded here or the URL would not parse. rediss: TLS, on the TLS port.
  redis_url = format(
    "rediss://:%s@%s:%d/0",
    urlencode(azurerm_redis_cache.main.primary_access_key),
    azurerm_redis_cache.main.hostname,
    azurerm_redis_cache.main.ssl_port,
  )
}
