"""The supplier's verified view of the library, through python-tuf's ngclient. Every trust decision
is ngclient's; this module decides only which roles to load and hands verified values onward.

This is the ONLY module that touches ngclient internals: ngclient has no public way to enumerate a
role's targets, so after ngclient has loaded and verified a role (by looking up a path under that
manufacturer's prefix) we read the verified role from ``Updater._trusted_set``. The behaviour this
relies on is pinned by tests/client/test_session.py. Everything else is public API: the trusted
root is always passed as ``bootstrap=`` (ngclient then walks its own cached root history, so no root
is fetched twice), and downloads name their cache file themselves (``filepath=``).

A manufacturer's role that is expired, missing or fails verification affects only that
manufacturer: ``load_manufacturers`` reports it as an ``UnverifiedRole`` and carries on with the
others, so one manufacturer cannot cut every supplier off from the rest of the library.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib import parse

from tuf.api import exceptions as tuf_exceptions
from tuf.api.metadata import DelegatedRole, SuccinctRoles, TargetFile, Targets
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from client.trust.catalogue import VerifiedTarget
from client.trust.transport import to_cfl_error
from metadata_templates import naming
from metadata_templates.cpl_document import CplDocument
from metadata_templates.errors import (
    CflError,
    ConfigurationError,
    UnavailableError,
    VerificationError,
)
from metadata_templates.outcomes import OutcomesDocument
from metadata_templates.releases import ReleaseList
from metadata_templates.withdrawals import WithdrawalList

# A manufacturer role grows by ~1.5 kB per image; allow large ones (ngclient's default is 5 MB).
TARGETS_MAX_LENGTH = 64 * 1024 * 1024
# Probe path used to make ngclient load a manufacturer's role: it matches `ID/*` but names no image.
_PROBE = "{mfr}/__cfl-role-probe__"


@dataclass(frozen=True)
class SessionPaths:
    """Where ngclient keeps trusted metadata and where verified downloads land first."""

    metadata_dir: Path
    download_dir: Path


@dataclass(frozen=True)
class UnverifiedRole:
    """A delegated manufacturer role the client could not verify; its images are left out.

    Attributes:
        manufacturer_id: the manufacturer whose images are missing from the catalogue.
        role: the role name, e.g. ``mfr-121D``.
        message: why, in ngclient's words (expired, bad signature, not found, ...).
    """

    manufacturer_id: str
    role: str
    message: str

    def to_json(self) -> dict[str, str]:
        """The documented ``unverified`` entry of the client's ``--json`` outputs."""
        return {"manufacturer_id": self.manufacturer_id, "role": self.role, "message": self.message}


@dataclass(frozen=True)
class ManufacturerTargets:
    """What loading some manufacturers' roles gave: verified targets, and roles that failed.

    Attributes:
        targets: verified image targets of every role that verified.
        unverified: roles that did not verify (their manufacturers' images are absent).
    """

    targets: tuple[VerifiedTarget, ...]
    unverified: tuple[UnverifiedRole, ...]


def target_cache_name(path: str) -> str:
    """The file name a verified target is cached under: the whole target path, URL-quoted, so
    every target has one flat, collision-free name (the --offline reader uses the same)."""
    return parse.quote(path, "")


def _wrap(error: Exception, what: str) -> CflError:
    """Map python-tuf's errors to ours at the boundary, keeping ngclient's own words.

    Download errors (HTTP statuses, timeouts, size caps) go through the transport's one mapping.
    """
    if isinstance(error, CflError):
        return error
    if isinstance(error, tuf_exceptions.DownloadError):
        mapped = to_cfl_error(error)
        return type(mapped)(f"{what}: {mapped}", hint=mapped.hint)
    if isinstance(error, tuf_exceptions.ExpiredMetadataError):
        return VerificationError(
            f"{what}: metadata has expired ({error}); the server may be replaying old data"
        )
    if isinstance(error, tuf_exceptions.BadVersionNumberError):
        return VerificationError(f"{what}: rollback refused ({error})")
    if isinstance(error, tuf_exceptions.RepositoryError):
        return VerificationError(f"{what}: verification failed ({type(error).__name__}: {error})")
    if isinstance(error, OSError):
        return UnavailableError(f"{what}: {error.strerror or error}")
    raise error  # a programming error: let it surface as one, not as "verification failed"


class Session:
    """One refresh's worth of verified state (ngclient's Updater refreshes once per instance)."""

    def __init__(
        self,
        paths: SessionPaths,
        repository_url: str,
        fetcher: FetcherInterface,
        *,
        bootstrap_root: bytes,
        metadata_url: str | None = None,
        targets_url: str | None = None,
        check_withdrawals: Callable[[WithdrawalList], None] | None = None,
    ) -> None:
        """Open ngclient on the home's trusted metadata.

        Args:
            paths: where trusted metadata and verified downloads live.
            repository_url: the published tree's base URL (``metadata/`` and ``targets/`` under it).
            fetcher: how bytes are fetched (the transport, the offline reader, a test double).
            bootstrap_root: the root the user was given at init: ngclient's trust anchor.
            metadata_url: a metadata base URL not under ``repository_url`` (conformance runs).
            targets_url: a targets base URL not under ``repository_url`` (conformance runs).
            check_withdrawals: called with every verified withdrawal list before it is returned;
                raises to refuse it (the home's history, client/trust/withdrawal_guard.py).

        Raises:
            VerificationError: the bootstrap root is not valid root metadata.
            UnavailableError: the folders cannot be created.
        """
        base = repository_url.rstrip("/") + "/"
        try:
            paths.metadata_dir.mkdir(parents=True, exist_ok=True)
            paths.download_dir.mkdir(parents=True, exist_ok=True)
            self._updater = Updater(
                str(paths.metadata_dir),
                metadata_url or base + "metadata/",
                str(paths.download_dir),
                targets_url or base + "targets/",
                fetcher=fetcher,
                config=UpdaterConfig(
                    targets_max_length=TARGETS_MAX_LENGTH, app_user_agent="cfl-client"
                ),
                bootstrap=bootstrap_root,
            )
        except Exception as e:
            raise _wrap(e, "trusted root") from e
        self.paths = paths
        self._refreshed = False
        self._check_withdrawals = check_withdrawals

    def refresh(self) -> None:
        """Verify the top-level roles (root chain, timestamp, snapshot, targets).

        Raises:
            VerificationError: rollback, freeze, mix-and-match, bad signatures.
            UnavailableError: the server could not be reached or answered with an error.
        """
        if self._refreshed:
            return
        try:
            self._updater.refresh()
        except Exception as e:
            raise _wrap(e, "refresh") from e
        self._refreshed = True

    # ------------------------------------------------------------------- private ngclient access

    def _trusted_role(self, role: str) -> Targets:
        """A role ngclient has verified and loaded (private attribute: pinned by a test)."""
        trusted: Any = self._updater._trusted_set
        signed = trusted[role]  # the verified Signed object, not its Metadata envelope
        if not isinstance(signed, Targets):
            raise VerificationError(f"{role}: found a {signed.type} role, expected targets")
        return signed

    def versions(self) -> dict[str, int]:
        """The verified top-level versions (private attribute: pinned by a test)."""
        self.refresh()
        trusted: Any = self._updater._trusted_set
        return {
            role: trusted[role].version for role in ("root", "timestamp", "snapshot", "targets")
        }

    # ------------------------------------------------------------------------------- queries

    def delegated_manufacturers(self) -> list[str]:
        """Manufacturer IDs the top-level targets role delegates to."""
        self.refresh()
        delegations = self._trusted_role(Targets.type).delegations
        roles = delegations.roles if delegations is not None and delegations.roles else {}
        found = (naming.manufacturer_of_role(name) for name in roles)
        return sorted(m for m in found if m is not None)

    def load_manufacturers(self, manufacturers: Iterable[str] | None = None) -> ManufacturerTargets:
        """Verified image targets of the given manufacturers (all delegated ones when None).

        Only those manufacturers' roles are fetched, so metadata traffic grows with the estate's
        variety, not with the library's size. A role that fails to verify or to arrive is reported
        in ``unverified`` and the others are still loaded.

        Raises:
            VerificationError: the top-level metadata failed verification.
            UnavailableError: the top-level metadata could not be fetched.
            ConfigurationError: the host refused this home's credentials.
        """
        delegated = set(self.delegated_manufacturers())
        wanted = sorted(delegated if manufacturers is None else delegated & set(manufacturers))
        targets: list[VerifiedTarget] = []
        unverified: list[UnverifiedRole] = []
        for mfr in wanted:
            role = naming.role_name(mfr)
            try:
                # The lookup makes ngclient fetch and verify the role through the delegation chain.
                self._updater.get_targetinfo(_PROBE.format(mfr=mfr))
            except Exception as e:
                error = _wrap(e, f"role {role}")
                if isinstance(error, ConfigurationError):
                    raise error from e  # refused credentials are not one manufacturer's problem
                unverified.append(UnverifiedRole(mfr, role, str(error)))
                continue
            delegation = self._trusted_role(Targets.type).get_delegated_role(role)
            try:
                holders = self._roles_holding_images(role)
            except Exception as e:
                error = _wrap(e, f"role {role}")
                if isinstance(error, ConfigurationError):
                    raise error from e
                unverified.append(UnverifiedRole(mfr, role, str(error)))
                continue
            for holder, succinct in holders:
                for path, target in sorted(self._trusted_role(holder).targets.items()):
                    if (
                        not isinstance(delegation, DelegatedRole)
                        or not delegation.is_delegated_path(path)
                        or (succinct is not None and succinct.get_role_for_target(path) != holder)
                    ):
                        # ngclient would never resolve such a path through this role; do not list it.
                        continue
                    targets.append(
                        VerifiedTarget(
                            path=path,
                            role=holder,
                            length=target.length,
                            sha256=target.hashes.get("sha256", ""),
                            custom=target.custom if isinstance(target.custom, dict) else {},
                        )
                    )
        return ManufacturerTargets(tuple(targets), tuple(unverified))

    def _roles_holding_images(self, role: str) -> list[tuple[str, SuccinctRoles | None]]:
        """The manufacturer role itself, or, when it is split into hash bins (TAP 15), every bin,
        each loaded and verified by ngclient (private ``Updater._load_targets``: ngclient walks
        only the one bin a path hashes to, and listing a manufacturer needs all of them; pinned by
        tests/client/test_session.py). A bin that fails fails the whole manufacturer.

        Raises:
            Exception: python-tuf's errors, mapped by the caller.
        """
        delegations = self._trusted_role(role).delegations
        succinct = delegations.succinct_roles if delegations is not None else None
        if succinct is None:
            return [(role, None)]
        updater: Any = self._updater
        holders: list[tuple[str, SuccinctRoles | None]] = []
        for name in succinct.get_roles():
            updater._load_targets(name, role)
            holders.append((name, succinct))
        return holders

    def verified_targets(self, manufacturers: Iterable[str] | None = None) -> list[VerifiedTarget]:
        """Like ``load_manufacturers``, but every requested role must verify.

        Raises:
            VerificationError: a role failed verification.
            UnavailableError: a role could not be fetched.
        """
        loaded = self.load_manufacturers(manufacturers)
        if loaded.unverified:
            first = loaded.unverified[0]
            raise VerificationError(first.message)
        return list(loaded.targets)

    def target_info(self, path: str) -> TargetFile:
        """The verified TargetFile for a path.

        Raises:
            VerificationError: no such target in the verified metadata.
        """
        self.refresh()
        try:
            info = self._updater.get_targetinfo(path)
        except Exception as e:
            raise _wrap(e, f"lookup {path}") from e
        if info is None:
            raise VerificationError(f"target {path!r}: not in the verified library")
        return info

    def download(self, path: str) -> Path:
        """Download a target into the session's download dir, verified by ngclient, and return
        its path. A cached file that still verifies is reused.

        Raises:
            VerificationError: the bytes did not match the signed length and hash.
            UnavailableError: the server could not be reached or answered with an error.
        """
        info = self.target_info(path)
        final = self.paths.download_dir / target_cache_name(info.path)
        cached = self._updater.find_cached_target(info, filepath=str(final))
        if cached is not None:
            return Path(cached)
        # ngclient writes its destination in place after verifying; give it a private temporary name
        # so a crash never leaves a file under the final cache name.
        try:
            fd, partial = tempfile.mkstemp(prefix=".partial-", dir=self.paths.download_dir)
            os.close(fd)
        except OSError as e:
            raise _wrap(e, f"download {path}: cache {self.paths.download_dir}") from e
        try:
            self._updater.download_target(info, filepath=partial)
            os.replace(partial, final)
        except Exception as e:
            Path(partial).unlink(missing_ok=True)
            raise _wrap(e, f"download {path}") from e
        return final

    def provider_document(self, path: str) -> bytes | None:
        """A verified provider target (``cfl/cpl.json``, ``cfl/withdrawals.json``), or None if absent.

        ngclient resolves the path itself: in targets (older libraries) or through the
        ``cfl-provider`` delegation (issue 13), whose role it fetches and verifies on the way.
        """
        self.refresh()
        try:
            info = self._updater.get_targetinfo(path)
        except Exception as e:
            raise _wrap(e, f"lookup {path}") from e
        if info is None:
            return None
        data = self.download(path).read_bytes()
        # ngclient verified it already; check again since we read it back from disk.
        expected = info.hashes["sha256"]
        if hashlib.sha256(data).hexdigest() != expected:
            raise VerificationError(f"{path}: cached copy changed on disk")
        return data

    def cpl(self) -> CplDocument:
        """The verified published CPL.

        Raises:
            VerificationError: the library publishes no CPL, or it is malformed.
        """
        data = self.provider_document(naming.CPL_TARGET_PATH)
        if data is None:
            raise VerificationError(f"{naming.CPL_TARGET_PATH}: the library publishes no CPL")
        try:
            return CplDocument.from_bytes(data)
        except ValueError as e:
            raise VerificationError(f"{naming.CPL_TARGET_PATH}: {e}") from e

    def withdrawals(self) -> WithdrawalList:
        """The verified withdrawal list (empty if none published).

        Raises:
            VerificationError: the list is malformed, or ``check_withdrawals`` refused it.
        """
        data = self.provider_document(naming.WITHDRAWALS_TARGET_PATH)
        try:
            document = WithdrawalList() if data is None else WithdrawalList.from_bytes(data)
        except ValueError as e:
            raise VerificationError(f"{naming.WITHDRAWALS_TARGET_PATH}: {e}") from e
        if self._check_withdrawals is not None:
            # An absent list is checked too: dropping the whole document drops every entry.
            self._check_withdrawals(document)
        return document

    def releases(self) -> ReleaseList:
        """The verified releases and holds of pilot images (empty if none published; issue 22).

        Raises:
            VerificationError: the document is malformed.
        """
        data = self.provider_document(naming.RELEASES_TARGET_PATH)
        if data is None:
            return ReleaseList()
        try:
            return ReleaseList.from_bytes(data)
        except ValueError as e:
            raise VerificationError(f"{naming.RELEASES_TARGET_PATH}: {e}") from e

    def outcomes(self) -> OutcomesDocument:
        """The verified delivery outcomes and holds (issue 24; an empty document if none is
        published, so a library without outcomes holds nothing).

        Raises:
            VerificationError: the document is malformed.
        """
        data = self.provider_document(naming.OUTCOMES_TARGET_PATH)
        if data is None:
            return OutcomesDocument(updated="1970-01-01T00:00:00Z")
        try:
            return OutcomesDocument.from_bytes(data)
        except ValueError as e:
            raise VerificationError(f"{naming.OUTCOMES_TARGET_PATH}: {e}") from e


class LocalFetcher(FetcherInterface):
    """`--offline`: serves ngclient the metadata it persisted in the home, and cached targets.

    ngclient still verifies everything it is served (signatures, versions, hashes, expiry), so an
    offline run trusts exactly what an online run trusted, and expired metadata is still refused.
    A request for a newer root is answered "not found", as a host with no new root would.
    """

    def __init__(self, metadata_dir: Path, targets_dir: Path, base_url: str) -> None:
        self.metadata_dir = metadata_dir
        self.targets_dir = targets_dir
        self.base_url = base_url

    def _fetch(self, url: str) -> Iterator[bytes]:
        relative = url.removeprefix(self.base_url)
        data = self._lookup(relative)
        if data is None:
            raise tuf_exceptions.DownloadHTTPError(
                f"offline: {relative} is not in the local cache", 404
            )
        return iter([data])

    def _lookup(self, relative: str) -> bytes | None:
        folder, _, name = relative.partition("/")
        if folder == "metadata":
            if name == "timestamp.json":
                return _read(self.metadata_dir / name)
            version, _, role_file = name.partition(".")
            if not version.isdigit() or role_file == "root.json":
                return None
            data = _read(self.metadata_dir / role_file)
            if data is None or json.loads(data).get("signed", {}).get("version") != int(version):
                return None
            return data
        if folder == "targets":
            directory, _, base = name.rpartition("/")
            _sha, _, original = base.partition(".")
            return _read(
                self.targets_dir
                / target_cache_name(f"{directory}/{original}" if directory else original)
            )
        return None


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
