"""The client home: no root, no trust; configuration round trip; one cfl process at a time."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import TOP_LEVEL_ROLE_NAMES, Metadata, Root, Targets

from client.trust.home import ClientConfig, ClientHome, check_root, normalise_repository_url
from client.trust.transport import TransportSettings
from metadata_templates.errors import ConfigurationError, RejectedInputError, UnavailableError


def make_root(*, sign: bool = True, other_signer: bool = False) -> bytes:
    signer = CryptoSigner.generate_ecdsa()
    root = Root()
    for role in TOP_LEVEL_ROLE_NAMES:
        root.add_key(signer.public_key, role)
    metadata = Metadata(root)
    if sign:
        metadata.sign(CryptoSigner.generate_ecdsa() if other_signer else signer)
    return metadata.to_bytes()


ROOT = make_root()


def test_initialise_writes_config_and_root_and_loads_back(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("tok-9f8e7d")
    home = ClientHome(tmp_path / "home")
    config = ClientConfig("https://cfl.example/lib", token_file=str(token), read_timeout=5)
    with home.lock():
        home.initialise(config, ROOT)
    assert home.is_initialised()
    assert home.load_config() == config
    assert home.bootstrap_root() == ROOT
    assert home.metadata_dir.is_dir() and home.targets_dir.is_dir()
    assert config.transport_settings() == TransportSettings(token_file=token, read_timeout=5)
    assert "tok-9f8e7d" not in home.config_path.read_text()  # the token itself is never copied
    # Even once ngclient keeps its own trusted root, the anchor stays the root given at init.
    (home.metadata_dir / "root.json").write_bytes(b"a tampered or newer root")
    assert home.bootstrap_root() == ROOT


def test_initialising_twice_needs_force_which_resets_trust_but_keeps_history(
    tmp_path: Path,
) -> None:
    home = ClientHome(tmp_path)
    home.initialise(ClientConfig("https://a.example"), ROOT)
    (home.metadata_dir / "root.json").write_bytes(ROOT)
    home.history_path.write_bytes(b"kept")
    with pytest.raises(ConfigurationError, match="already initialised"):
        home.initialise(ClientConfig("https://b.example"), ROOT)
    new_root = make_root()
    home.initialise(ClientConfig("https://b.example"), new_root, force=True)
    assert home.load_config().repository_url == "https://b.example"
    assert list(home.metadata_dir.iterdir()) == []
    assert home.bootstrap_root() == new_root
    assert home.history_path.read_bytes() == b"kept"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not TUF metadata"),
        (Metadata(Targets()).to_bytes(), "not TUF metadata|signed._type"),
        (make_root(sign=False), "not signed by a threshold"),
        (make_root(other_signer=True), "not signed by a threshold"),
    ],
    ids=["not-json", "targets-not-root", "unsigned", "signed-by-a-stranger"],
)
def test_no_valid_root_no_trust(tmp_path: Path, data: bytes, message: str) -> None:
    home = ClientHome(tmp_path)
    with pytest.raises(RejectedInputError, match=message):
        home.initialise(ClientConfig("https://a.example"), data)
    assert not home.is_initialised()
    with pytest.raises(RejectedInputError, match=message):
        check_root(data, "x")


def test_named_files_must_exist_at_init(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigurationError, match=r"client-cert: found .*, expected an existing file"
    ):
        ClientHome(tmp_path).initialise(
            ClientConfig("https://a.example", client_cert=str(tmp_path / "nope.pem")), ROOT
        )


def _pem(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, password: bytes | None = None
) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a key at all", "expected a P-256 private key in PEM"),
        (b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "a P-256 private key"),
        (_pem(ec.generate_private_key(ec.SECP384R1())), "found 'EC P-384', expected an EC P-256"),
        (_pem(rsa.generate_private_key(65537, 2048)), "found 'RSA None', expected an EC P-256"),
        (b"Proc-Type: 4,ENCRYPTED\n", "found 'no PEM private key'"),
    ],
    ids=["junk", "certificate", "p384", "rsa", "encrypted-but-no-pem"],
)
def test_a_wrong_notes_key_is_refused_at_init_not_at_first_download(
    tmp_path: Path, content: bytes, message: str
) -> None:
    key = tmp_path / "notes.pem"
    key.write_bytes(content)
    home = ClientHome(tmp_path / "home")
    with pytest.raises(ConfigurationError, match=f"--notes-key {key}.*{message}"):
        home.initialise(ClientConfig("https://a.example", notes_key=str(key)), ROOT)
    assert not home.is_initialised()


@pytest.mark.parametrize("password", [None, b"correct horse"], ids=["plain", "encrypted"])
def test_a_p256_notes_key_is_accepted_at_init(tmp_path: Path, password: bytes | None) -> None:
    # An encrypted key is checked for its form only: its passphrase is asked for when a note is read.
    key = tmp_path / "notes.pem"
    key.write_bytes(_pem(ec.generate_private_key(ec.SECP256R1()), password))
    home = ClientHome(tmp_path / "home")
    home.initialise(ClientConfig("https://a.example", notes_key=str(key)), ROOT)
    assert home.load_config().notes_key == str(key)


def test_an_uninitialised_home_says_how_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no client home at") as caught:
        ClientHome(tmp_path).load_config()
    assert "cfl --home HOME init URL --root ROOT.json" in (caught.value.hint or "")


BASE = {"schema_version": 1, "repository_url": "https://a.example"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "a JSON object"),
        ({**BASE, "schema_version": 2}, "schema_version: found 2"),
        ({**BASE, "repo_url": "x"}, r"keys: found \['repo_url'\]"),
        ({"schema_version": 1}, "repository_url: found None"),
        ({**BASE, "token_file": 3}, "token_file: found 3"),
        ({**BASE, "read_timeout": 0}, "read_timeout: found 0, expected seconds > 0"),
        ({**BASE, "connect_timeout": True}, "connect_timeout: found True"),
        ({**BASE, "repository_url": "ftp://a.example"}, "repository_url: found 'ftp://a.example'"),
        ({**BASE, "notes_key": "key.pem"}, "notes_key: found 'key.pem', expected an absolute path"),
    ],
    ids=[
        "not-object",
        "schema-version",
        "unknown-key",
        "no-url",
        "path-type",
        "zero-timeout",
        "bool-timeout",
        "url-scheme",
        "relative-path",
    ],
)
def test_malformed_config_is_refused(data: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ClientConfig.from_dict(data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://cfl.example/lib/", "https://cfl.example/lib"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("file:///srv/cfl/public/", "file:///srv/cfl/public"),
    ],
    ids=["https", "http", "file"],
)
def test_repository_urls(text: str, expected: str) -> None:
    assert normalise_repository_url(text) == expected


def test_a_local_folder_becomes_a_file_url(tmp_path: Path) -> None:
    assert normalise_repository_url(str(tmp_path)) == tmp_path.resolve().as_uri()


@pytest.mark.parametrize("text", ["ftp://x/y", "no/such/folder", "https://"], ids=str)
def test_bad_repository_urls(text: str) -> None:
    with pytest.raises(ConfigurationError, match="repository URL: found"):
        normalise_repository_url(text)


def test_a_second_cfl_process_is_refused_naming_the_holder(tmp_path: Path) -> None:
    home = ClientHome(tmp_path)
    holder = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from client.trust.home import ClientHome
        with ClientHome(Path({str(tmp_path)!r})).lock():
            print("held", flush=True)
            sys.stdin.read()
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", holder],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        with pytest.raises(UnavailableError) as caught, home.lock():
            pass
        # The refusal names the holder from its record: the command, its PID, host and since.
        assert re.fullmatch(
            rf"the client home {re.escape(str(home.path))} is busy: cfl \(PID {process.pid} on "
            r"\S+, since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)",
            str(caught.value),
        ), str(caught.value)
        assert caught.value.hint is not None and str(home.lock_path) in caught.value.hint
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)
        assert process.stdout is not None
        process.stdout.close()
    with home.lock():  # released when the holder exits
        pass


def test_errors_inside_the_locked_block_are_not_mistaken_for_the_lock(tmp_path: Path) -> None:
    with pytest.raises(UnavailableError, match="network down"), ClientHome(tmp_path).lock():
        raise UnavailableError("network down")


def test_config_file_is_json_with_schema_version(tmp_path: Path) -> None:
    home = ClientHome(tmp_path)
    home.initialise(ClientConfig("https://a.example"), ROOT)
    assert json.loads(home.config_path.read_text())["schema_version"] == 1
