"""client.log."""
