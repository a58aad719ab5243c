"""A manufacturer deposits an image signed on a real PKCS#11 token (SoftHSM), addressed by `hsm:` URI.

The key is generated on the token by `pkcs11-tool`, as an operator would, and never leaves it;
securesystemslib's HSMSigner signs the manufacturer role through repo_tool's URI-based key loading,
and the provider's gateway accepts the deposit because the signature verifies against the public key
registered for that manufacturer.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner, HSMSigner, Signature, Signer, SSlibKey
from tuf.api.metadata import Metadata, Targets

from conftest import require_system
from factory import LibraryFactory, make_entry, make_image, mi_sha
from metadata_templates import naming
from repo_tool.intake.bundle import Declaration
from repo_tool.ops.manufacturers import add_manufacturer as add_manufacturer_op
from repo_tool.signing.keys import SignerRef, load_signer
from repo_tool.submit.deposit import Submission, build_submission
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import verified_library

pytestmark = pytest.mark.system

TOKEN_LABEL = "cfl-test-token"
USER_PIN = "246810"
SO_PIN = "13579111"
KEY_ID = 2  # CKA_ID 0x02, HSMSigner's default slot
MFR = "121D"
TOOL_TIMEOUT = 60
SOFTHSM_MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


def softhsm_module() -> str | None:
    """The SoftHSM PKCS#11 module: the usual places, then whatever dpkg says it installed."""
    for candidate in SOFTHSM_MODULE_CANDIDATES:
        if os.path.isfile(candidate):
            return candidate
    if shutil.which("dpkg") is None:
        return None
    for package in ("libsofthsm2", "softhsm2"):
        listed = subprocess.run(
            ["dpkg", "-L", package], capture_output=True, text=True, timeout=TOOL_TIMEOUT
        )
        for line in listed.stdout.splitlines():
            if line.endswith("/libsofthsm2.so") and os.path.isfile(line):
                return line
    return None


def require_python_pkcs11() -> None:
    """HSMSigner needs python-pkcs11, which the `hsm` extra installs; same skip/fail rule as
    require_system."""
    if importlib.util.find_spec("pkcs11") is not None:
        return
    message = "python-pkcs11 is not installed: run `.venv/bin/pip install -e '.[test,hsm]'`"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def run_tool(*args: str) -> str:
    completed = subprocess.run(args, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    assert completed.returncode == 0, f"{args[0]} failed:\n{completed.stdout}\n{completed.stderr}"
    return completed.stdout


@dataclass
class Token:
    """The token's signer URI and public key; ``pin`` is the secrets handler, which records asks."""

    module: str
    uri: str
    public_key: SSlibKey
    pins_asked: list[str] = field(default_factory=list)

    def pin(self, what: str) -> str:
        self.pins_asked.append(what)
        return USER_PIN


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Token]:
    """A fresh SoftHSM token in a private directory with an ECDSA P-256 key made on the token."""
    require_system("softhsm2-util", "pkcs11-tool")
    require_python_pkcs11()
    module = softhsm_module()
    if module is None:
        require_system("libsofthsm2.so")  # found nowhere: skip locally, fail in CI
        raise AssertionError("unreachable: require_system skips or fails")
    home = tmp_path_factory.mktemp("softhsm")
    (home / "tokens").mkdir()
    conf = home / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {home / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        # Which token store SoftHSM opens, and which PKCS#11 module HSMSigner loads: configuration.
        mp.setenv("SOFTHSM2_CONF", str(conf))
        mp.setenv("PYKCS11LIB", module)
        run_tool(
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            TOKEN_LABEL,
            "--so-pin",
            SO_PIN,
            "--pin",
            USER_PIN,
        )
        run_tool(
            "pkcs11-tool",
            "--module",
            module,
            "--token-label",
            TOKEN_LABEL,
            "--login",
            "--pin",
            USER_PIN,
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--id",
            f"{KEY_ID:02x}",
            "--label",
            f"cfl-mfr-{MFR}",
        )
        try:
            uri, public_key = HSMSigner.import_(KEY_ID, TOKEN_LABEL, lambda _: USER_PIN)
            yield Token(module, uri, public_key)
        finally:
            import pkcs11  # present: require_python_pkcs11 checked

            # SoftHSM reads SOFTHSM2_CONF when the module is initialised: never reuse this one.
            pkcs11.unload(module)


def library_with_hsm_manufacturer(tmp_path: Path, token: Token, image: bytes) -> LibraryFactory:
    """A published library whose manufacturer 121D has exactly one key: the one on the token."""
    factory = LibraryFactory(tmp_path)
    factory.import_cpl([make_entry("CPL-0002", mfr=MFR, fw="00000002", image_sha=mi_sha(image))])
    with factory.repo.locked():
        add_manufacturer_op(
            factory.repo, MFR, f"Maker {MFR}", [token.public_key], 1, now=factory.tick()
        )
    factory.publish()
    return factory


def submit_with(factory: LibraryFactory, image: bytes, signer: Signer) -> Submission:
    """What `cfl-repo submit --signer URI` does: build the next role version and sign it."""
    library = verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick(), check_blobs=False
    )
    return build_submission(
        image=image,
        manufacturer_id=MFR,
        signers=[signer],
        declaration=Declaration(("CPL-0002",), "compliance", ()),
        release_notes=None,
        library=library,
        now=factory.now,
    )


def test_hsm_uri_names_the_token_and_key_and_loads_an_hsm_signer(token: Token) -> None:
    assert token.uri == f"hsm:{KEY_ID}?label={TOKEN_LABEL}"
    assert token.public_key.scheme == "ecdsa-sha2-nistp256"
    # repo_tool's loader (role configs and `submit --signer URI`) resolves the URI to the HSM
    signer = load_signer(
        SignerRef(token.public_key, token.uri), base=Path(), secrets_handler=token.pin
    )
    assert isinstance(signer, HSMSigner)
    assert (signer.hsm_keyid, signer.token_label) == (KEY_ID, TOKEN_LABEL)


def test_manufacturer_deposit_signed_on_the_hsm_is_accepted(token: Token, tmp_path: Path) -> None:
    image = make_image(MFR, 2)
    factory = library_with_hsm_manufacturer(tmp_path, token, image)
    hsm_signer = load_signer(
        SignerRef(token.public_key, token.uri), base=tmp_path, secrets_handler=token.pin
    )
    token.pins_asked.clear()

    submission = submit_with(factory, image, hsm_signer)

    assert token.pins_asked == [HSMSigner.SECRETS_HANDLER_MSG]  # the PIN came via the handler
    role = Metadata[Targets].from_bytes(submission.bundle.role_bytes)
    (signature,) = role.signatures.values()
    assert signature.keyid == token.public_key.keyid
    token.public_key.verify_signature(signature, role.signed_bytes)

    result = factory.ingest(submission.bundle)
    assert result.status == "accepted", result.messages
    factory.publish()

    published = verified_library(folder_reader(factory.out), factory.root_bytes, now=factory.tick())
    (entry,) = published.images
    assert entry.target_path == submission.bundle.target
    assert entry.role == naming.role_name(MFR)
    summary = next(r for r in published.roles if r.name == entry.role)
    assert summary.keyids == (token.public_key.keyid,)


def test_gateway_rejects_a_signature_under_the_hsm_key_id_made_by_another_key(
    token: Token, tmp_path: Path
) -> None:
    """The acceptance above rests on the HSM's signature: the same role with a signature that only
    claims the HSM key's ID (made by a software key) is rejected as a bad signature."""
    image = make_image(MFR, 2)
    factory = library_with_hsm_manufacturer(tmp_path, token, image)
    hsm_signer = load_signer(
        SignerRef(token.public_key, token.uri), base=tmp_path, secrets_handler=token.pin
    )
    genuine = submit_with(factory, image, hsm_signer).bundle
    role = Metadata[Targets].from_bytes(genuine.role_bytes)
    forged = CryptoSigner.generate_ecdsa().sign(role.signed_bytes)
    role.signatures = {token.public_key.keyid: Signature(token.public_key.keyid, forged.signature)}

    result = factory.ingest(replace(genuine, role_bytes=role.to_bytes()))

    assert result.status == "rejected"
    assert result.reasons == ["bad-signature"], result.messages
