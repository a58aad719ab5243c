"""Delivery outcomes on the provider's side (issue 24): checking suppliers' reports (pure)."""
