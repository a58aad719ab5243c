"""The ``cfl`` console script: start the client without the signing back-ends it never uses.

Every client command verifies TUF metadata, so it imports ``tuf.api.metadata``, which imports
securesystemslib's signer package, which imports every signer it ships. Two of them import a large
optional package whenever it is installed: the AWS KMS signer imports boto3 (with botocore and
s3transfer, about 0.1 s; the provider's S3 publishing and the test tools install it) and the HSM
signer imports python-pkcs11 (with asn1crypto; the ``hsm`` extra installs it). Together they were
about a third of ``cfl check``'s start-up. The client only verifies signatures; it never signs, so
it never uses either.

securesystemslib imports each of them inside ``try: ... except ImportError``, records the missing
library, and raises ``UnsupportedLibraryError`` only if that signer is then used: an install
without them is one it supports. Before anything imports tuf, ``main`` marks each of them "not
importable" for this process only, the way the import system documents (a ``None`` entry in
``sys.modules`` makes ``import`` raise ``ModuleNotFoundError``). The ``cfl`` process then runs
exactly as it would in an install that lacks those two packages, which is what a supplier needs
anyway.

Nothing else sees the change: it happens in ``main`` (not at import), only in the ``cfl`` process,
and only for packages not imported yet; ``client.cli`` imported by a test or a library is
untouched. tests/client/test_entry.py pins the saving, that verification still works, and that no
client module imports these packages.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

# Top-level packages imported only by securesystemslib signers the verifying client never uses.
UNUSED_SIGNER_PACKAGES = ("boto3", "pkcs11")


def block_unused_imports(names: Iterable[str] = UNUSED_SIGNER_PACKAGES) -> list[str]:
    """Make ``import NAME`` fail in this process for each package in ``names`` not imported yet.

    Returns:
        The names blocked (those not already imported).
    """
    blocked = []
    for name in names:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]  # the documented import block
            blocked.append(name)
    return blocked


def main() -> None:
    """Console-script entry point of ``cfl``."""
    block_unused_imports()
    from client.cli.main import main as cli_main  # after the block: it imports tuf

    cli_main()
