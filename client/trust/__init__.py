"""client.trust."""
