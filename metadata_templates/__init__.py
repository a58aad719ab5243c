"""The contract shared by the repository tool and the supplier client.

Both sides import this package; neither imports the other. It holds the shape of the CFL custom target
metadata (``custom.cfl``) and its JSON Schema, target-path and role naming, the role policy template,
identifier normalisation, the error hierarchy with its exit codes, and atomic file writes.
"""

SCHEMA_VERSION = 1
