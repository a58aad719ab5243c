"""The client home (``--home``): configuration, trusted metadata, cache, history, and a lock.

Layout::

    config.json          repository URL and transport settings (paths, timeouts)
    bootstrap-root.json  the root the supplier was given at ``cfl init``: the trust anchor
    metadata/            ngclient's trusted metadata (it maintains this folder itself)
    targets/             ngclient's verified download cache
    history.sqlite       what was checked (Change of Supplier)
    withdrawals-seen.json  every withdrawal this home verified (client/trust/withdrawal_history.py)
    log/                 the transparency log state (client/log/transparency.py)
    lock                 held by the running cfl process

Nothing is trusted without a root file: ``initialise`` refuses to create a home without one. Two cfl
processes never work on one home at once: ``lock`` fails at once (or waits, ``cfl --wait``), naming
the other process from its record in the lock file (metadata_templates/locking.py).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import urllib.parse
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import platformdirs
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root

from client.trust.transport import DEFAULT_DEADLINE_SECONDS, CflFetcher, TransportSettings
from client.trust.withdrawal_history import WithdrawalHistory
from metadata_templates import SCHEMA_VERSION
from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.errors import (
    ConfigurationError,
    RejectedInputError,
    UnavailableError,
    field_error,
)
from metadata_templates.locking import LockPolicy, exclusive_lock

_ENTITY_ID = re.compile(r"[0-9A-F]{16}")
APP_NAME = "cfl"
CONFIG_NAME = "config.json"
BOOTSTRAP_ROOT_NAME = "bootstrap-root.json"
WITHDRAWAL_HISTORY_NAME = "withdrawals-seen.json"


def default_home() -> Path:
    """The per-user data folder for cfl (e.g. ``~/.local/share/cfl`` on Linux)."""
    return platformdirs.user_data_path(APP_NAME, appauthor=False)


@dataclass(frozen=True)
class ClientConfig:
    """What ``cfl init`` records.

    Attributes:
        repository_url: base URL of the published tree (``https://``, ``http://`` or ``file://``).
        client_cert: client certificate for mutual TLS, absolute path.
        client_key: its private key, absolute path.
        ca_bundle: CA certificates to trust, absolute path.
        token_file: bearer token file, absolute path (the token itself is never copied here).
        connect_timeout: seconds.
        read_timeout: seconds.
        notes_key: the organisation's P-256 private key for release notes, absolute path (default:
            ``client_key``, the key of the registered certificate).
        deadline: seconds any one request may take in all.
        entity_id: the organisation's Entity ID (``cfl init --entity``), so the client shows its
            own pilot images (issue 22) and offers nobody else's; None: a client that belongs to
            no pilot.
    """

    repository_url: str
    client_cert: str | None = None
    client_key: str | None = None
    ca_bundle: str | None = None
    token_file: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    notes_key: str | None = None
    deadline: float = DEFAULT_DEADLINE_SECONDS
    entity_id: str | None = None

    def transport_settings(self) -> TransportSettings:
        """The fetcher settings this configuration describes."""

        def path(value: str | None) -> Path | None:
            return None if value is None else Path(value)

        return TransportSettings(
            client_cert=path(self.client_cert),
            client_key=path(self.client_key),
            ca_bundle=path(self.ca_bundle),
            token_file=path(self.token_file),
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            deadline=self.deadline,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy with the schema version (no ``entity_id`` key when there is none, so
        a home without one is written as before)."""
        doc = {"schema_version": SCHEMA_VERSION, **asdict(self)}
        if self.entity_id is None:
            del doc["entity_id"]
        return doc

    @classmethod
    def from_dict(cls, data: Any, where: str = CONFIG_NAME) -> ClientConfig:
        """Read a configuration, refusing unknown keys so a typo is not silently ignored.

        Raises:
            ConfigurationError: wrong schema version, unknown or missing keys, wrong types.
        """
        if not isinstance(data, dict):
            raise ConfigurationError(field_error(where, type(data).__name__, "a JSON object"))
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ConfigurationError(
                field_error(
                    f"{where}: schema_version", data.get("schema_version"), str(SCHEMA_VERSION)
                )
            )
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k != "schema_version"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigurationError(
                field_error(f"{where}: keys", unknown, f"some of {sorted(known)}")
            )
        url = values.get("repository_url")
        if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in (
            "http",
            "https",
            "file",
        ):
            raise ConfigurationError(
                field_error(f"{where}: repository_url", url, "an https://, http:// or file:// URL")
            )
        for name in ("client_cert", "client_key", "ca_bundle", "token_file", "notes_key"):
            value = values.get(name)
            # `cfl init` records absolute paths; a relative one would change with the working
            # directory, so it is a hand edit that would fail (or read another file) at first use.
            if not (value is None or (isinstance(value, str) and Path(value).is_absolute())):
                raise ConfigurationError(
                    field_error(f"{where}: {name}", value, "an absolute path or null")
                )
        entity = values.get("entity_id")
        if not (entity is None or (isinstance(entity, str) and _ENTITY_ID.fullmatch(entity))):
            raise ConfigurationError(
                field_error(f"{where}: entity_id", entity, "16 upper-case hex digits or null")
            )
        for name in ("connect_timeout", "read_timeout", "deadline"):
            value = values.get(name, 1.0)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigurationError(field_error(f"{where}: {name}", value, "seconds > 0"))
        return cls(**values)


def normalise_repository_url(text: str) -> str:
    """A repository URL with no trailing slash; an existing local folder becomes a ``file://`` URL.

    Raises:
        ConfigurationError: not an http(s) or file URL, nor an existing folder.
    """
    parts = urllib.parse.urlsplit(text)
    if parts.scheme in ("http", "https") and parts.netloc:
        return text.rstrip("/")
    if parts.scheme == "file":
        return text.rstrip("/")
    if not parts.scheme and Path(text).is_dir():
        return Path(text).resolve().as_uri()
    raise ConfigurationError(
        field_error("repository URL", text, "an https://, http:// or file:// URL, or a folder")
    )


def check_root(data: bytes, where: str) -> Root:
    """Check that ``data`` is TUF root metadata signed by a threshold of its own keys.

    ngclient checks this again when it bootstraps; checking here means a wrong file is refused at
    ``cfl init`` with a clear message instead of at the first refresh.

    Raises:
        RejectedInputError: not root metadata, or not signed by enough of its own root keys.
    """
    try:
        metadata = Metadata[Root].from_bytes(data)
    except Exception as e:  # securesystemslib and tuf raise several unrelated types here
        raise RejectedInputError(f"root file {where}: not TUF metadata ({e})") from e
    if not isinstance(metadata.signed, Root):
        raise RejectedInputError(
            field_error(f"root file {where}: signed._type", metadata.signed.type, "'root'")
        )
    try:
        metadata.signed.verify_delegate(Root.type, metadata.signed_bytes, metadata.signatures)
    except UnsignedMetadataError as e:
        raise RejectedInputError(
            f"root file {where}: not signed by a threshold of its own root keys ({e})"
        ) from e
    return metadata.signed


class ClientHome:
    """One supplier's client home folder."""

    def __init__(self, path: Path | None = None, *, lock: LockPolicy | None = None) -> None:
        self.path = (path or default_home()).expanduser()
        # What this process records in the lock file and how long it waits (cfl --wait).
        self.lock_policy = lock or LockPolicy(command="cfl")
        self._lock_depth = 0

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_NAME

    @property
    def bootstrap_root_path(self) -> Path:
        return self.path / BOOTSTRAP_ROOT_NAME

    @property
    def metadata_dir(self) -> Path:
        return self.path / "metadata"

    @property
    def targets_dir(self) -> Path:
        return self.path / "targets"

    @property
    def history_path(self) -> Path:
        return self.path / "history.sqlite"

    @property
    def lock_path(self) -> Path:
        return self.path / "lock"

    @property
    def withdrawal_history_path(self) -> Path:
        return self.path / WITHDRAWAL_HISTORY_NAME

    @property
    def log_dir(self) -> Path:
        return self.path / "log"

    def is_initialised(self) -> bool:
        """True once ``initialise`` has completed here."""
        return self.config_path.is_file() and self.bootstrap_root_path.is_file()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the home's exclusive lock for the block (nested holds by one object are one hold,
        so `cfl refresh` checks the log under the same hold as its refresh).

        Raises:
            BusyError: another cfl process holds it (for longer than ``--wait``); the message
                names it: command, PID, host and since when.
            ConfigurationError: the home cannot be created (e.g. it lies under a regular file).
        """
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(
                    exclusive_lock(
                        self.lock_path,
                        subject=f"the client home {self.path}",
                        policy=self.lock_policy,
                    )
                )
            except OSError as e:
                raise ConfigurationError(
                    field_error("--home", str(self.path), "a folder cfl can create and write")
                    + f" ({e.strerror or e})"
                ) from e
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0

    def initialise(self, config: ClientConfig, root: bytes, *, force: bool = False) -> None:
        """Create the home: check the root, check the files the config names, write both.

        Must be called under ``lock``. With ``force``, an existing home's trusted metadata and
        cache are discarded (trust starts again from the new root); the history is kept.

        Raises:
            ConfigurationError: already initialised (without ``force``), or a named file is missing.
            RejectedInputError: the root is not valid, self-signed root metadata.
            UnavailableError: the home cannot be written.
        """
        if self.is_initialised() and not force:
            raise ConfigurationError(
                f"client home {self.path} is already initialised",
                hint="use --force to start again from a new root (history is kept)",
            )
        check_root(root, "given")
        for name in ("client_cert", "client_key", "ca_bundle", "token_file", "notes_key"):
            value = getattr(config, name)
            if value is not None and not Path(value).is_file():
                raise ConfigurationError(
                    field_error(name.replace("_", "-"), value, "an existing file")
                )
        # Load the TLS files and the token now, as every later command will: a CA bundle with no
        # certificate or a key that does not match is refused here, not at the first refresh.
        CflFetcher(config.transport_settings()).close()
        if config.notes_key is not None:
            # Imported here: jwcrypto is not needed by the commands that only load a home.
            from client.notes.release_notes import check_notes_key

            check_notes_key(Path(config.notes_key), "--notes-key")
        try:
            for folder in (self.metadata_dir, self.targets_dir):
                if folder.exists():
                    shutil.rmtree(folder)
            # The withdrawals seen belong to the trust being discarded: a home re-initialised for
            # another library must not refuse that library's list for lacking this one's entries.
            self.withdrawal_history_path.unlink(missing_ok=True)
            self.metadata_dir.mkdir(parents=True, exist_ok=True)
            self.targets_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.bootstrap_root_path, root)
            # config.json last: its presence means the home is complete.
            atomic_write_bytes(
                self.config_path,
                (json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n").encode(),
            )
        except OSError as e:
            raise UnavailableError(f"client home {self.path}: {e.strerror or e}") from e

    def load_config(self) -> ClientConfig:
        """The home's configuration.

        Raises:
            ConfigurationError: not initialised, or the configuration is malformed.
        """
        if not self.is_initialised():
            raise ConfigurationError(
                f"no client home at {self.path}",
                hint="run: cfl --home HOME init URL --root ROOT.json",
            )
        try:
            data = json.loads(self.config_path.read_bytes())
        except (OSError, ValueError) as e:
            raise ConfigurationError(f"{self.config_path}: unreadable ({e})") from e
        return ClientConfig.from_dict(data, str(self.config_path))

    def bootstrap_root(self) -> bytes:
        """The root given at ``cfl init``: passed to ngclient as ``bootstrap=`` on every run.

        ngclient keeps the newer roots it has verified in its own root history and walks them from
        this anchor without fetching them again, so always starting here costs nothing and means
        a tampered ``metadata/root.json`` can never become the trust anchor.

        Raises:
            ConfigurationError: not initialised, or the root file cannot be read.
        """
        try:
            return self.bootstrap_root_path.read_bytes()
        except OSError as e:
            raise ConfigurationError(
                f"no trusted root in {self.path} ({e.strerror or e})",
                hint="run: cfl --home HOME init URL --root ROOT.json",
            ) from e

    def withdrawal_history(self) -> WithdrawalHistory:
        """The withdrawals this home has verified (empty before the first refresh).

        Raises:
            ConfigurationError: the file is unreadable or malformed.
        """
        path = self.withdrawal_history_path
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return WithdrawalHistory.empty()
        except OSError as e:
            raise ConfigurationError(f"{path}: unreadable ({e.strerror or e})") from e
        return WithdrawalHistory.from_bytes(data, str(path))

    def save_withdrawal_history(self, history: WithdrawalHistory) -> None:
        """Remember ``history`` (atomically; the caller holds the lock).

        Raises:
            UnavailableError: the home cannot be written.
        """
        try:
            atomic_write_bytes(self.withdrawal_history_path, history.to_bytes())
        except OSError as e:
            raise UnavailableError(
                f"{self.withdrawal_history_path}: cannot write ({e.strerror or e})"
            ) from e
