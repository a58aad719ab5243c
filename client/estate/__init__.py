"""client.estate."""
