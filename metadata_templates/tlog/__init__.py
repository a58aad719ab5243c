"""A transparency log in the C2SP formats, shared by the provider's tool and the client.

Pure code only (bytes and values in, values out): RFC 6962 hashing and proof checks
(:mod:`.merkle`), the tlog-tiles layout (:mod:`.tiles`), proofs computed from tiles (:mod:`.proofs`),
signed notes and cosignatures (:mod:`.note`), checkpoints (:mod:`.checkpoint`) and the CFL event
entries (:mod:`.events`). Written against the C2SP texts (c2sp.org/tlog-tiles, tlog-checkpoint,
signed-note, tlog-cosignature) because no maintained Python library implements them; see
docs/transparency.md.
"""
