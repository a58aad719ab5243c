"""Delivery outcomes on the supplier's side (issue 24): record per-device results in the home, submit
counts-only reports signed with the organisation key, and gate rollout phases on them.

Device IDs stay in the home's ledger (``outcomes/results.json``); only counts per image and outcome
ever leave it (metadata_templates/outcomes.py has no field for anything else).
"""
