"""Access control: scoped API keys (stored hashed) and the audit log of what they did."""
