"""The CFL provider's and manufacturers' repository tool (command ``cfl-repo``)."""

__version__ = "0.1.0"
