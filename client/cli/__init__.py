"""client.cli."""
