"""One module per operation on a repository, each a transaction over the state layer.

| operation | module |
|---|---|
| create a repository | `init` |
| import the CPL | `cpl_import` |
| register a manufacturer | `manufacturers` |
| run the gateway on bundles | `ingest` |
| withdraw an image | `withdraw` |
| sign snapshot and timestamp for what changed | `snapshot` |
| re-sign what is close to expiry | `refresh` |
| change top-level keys through root | `rotate_keys` |
| report what is staged and what expires | `status` |

Each function takes an open `Repository` (held under its lock by the caller), builds new immutable
files, and makes them current with exactly one `Repository.commit`, so a kill at any instruction
leaves either the old state or the new one.
"""
