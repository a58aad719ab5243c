"""The CFL supplier's verifying client (command ``cfl``)."""

__version__ = "0.1.0"
