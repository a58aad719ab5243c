"""Entitlement by estate (issue 22): which images each supplier has the right to, from an inventory."""
