"""client.notes."""
