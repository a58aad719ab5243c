"""client.fetch."""
