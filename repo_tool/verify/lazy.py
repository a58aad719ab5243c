"""The flat walk's recalled roles: what the website step takes from a role it verified before
without decoding what it learnt from it (issue 26).

The verified-role memo (repo_tool/verify/memo.py) spares a walk python-tuf's parsing and the JSON
Schema of every unchanged role, but decoding its entries and building every image's
``CflTargetInfo`` is still linear in the library. The website step of a publish that tells the
site its new images (repo_tool/publish/site_step.py) needs, of an unchanged role, only its
version, expiry, bin delegation, image count, manufacturers, whether any image is in a pilot and
its advisory targets: the summary the memo writes into each entry's header line. With
``lazy=True`` the walk (repo_tool/verify/walk.py) still reads every role file and checks its
length and SHA-256 against the verified snapshot, keys the memo by that hash and the delegation,
and re-checks expiry; on a hit it reads only the header line and keeps a ``LazyRole``. The
images of those roles are decoded only when something iterates the library (the site's full
build, or its search for new images when the hint does not fit), so the result is the same
library, only later.

Not re-checked for a recalled role (they were when its entry was written, and its bytes have not
changed): its release-notes references. A release-notes or advisory-detail reference from a
changed role to a path no changed role holds decodes the recalled roles of that manufacturer to
look for it (``OwnedPaths``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, overload

from tuf.api.metadata import Delegations, Metadata, MetaFile, Targets

from metadata_templates.errors import VerificationError
from metadata_templates.withdrawals import Withdrawal
from repo_tool.verify.memo import RoleFacts, VerifyMemo
from repo_tool.verify.published import PublishedImage
from repo_tool.verify.sources import _read_listed, _Walk
from repo_tool.verify.stamps import RoleStamps

__all__ = [
    "LazyImages",
    "LazyRecallError",
    "LazyRole",
    "OwnedPaths",
    "RoleSource",
    "lazy_role",
    "read_role",
]

# A verified role as the walk keeps it: parsed, its checked bytes (recalled from the memo), or a
# function reading and checking them on first use (a stamped file, see ``read_role``).
RoleSource = Metadata[Targets] | bytes | Callable[[], bytes]


def read_role(
    walk: _Walk, relative: str, meta: MetaFile, stamps: RoleStamps | None
) -> tuple[bytes | Callable[[], bytes], str] | None:
    """A role file's bytes and SHA-256, checked against the snapshot's pin ``meta``; None when it
    is missing or does not match (a problem recorded). With ``stamps`` (the flat walk), a file
    stamped matching this very pin and untouched since is not read: its bytes come as a function
    that reads and checks them again when something needs them (the site never does).

    The SHA-256 is the pin's when the snapshot pins one (``_read_listed`` just checked it)."""
    pinned = meta.hashes.get("sha256") if meta.hashes else None
    if stamps is not None and pinned is not None and stamps.unchanged(relative, pinned):

        def later() -> bytes:
            data = walk.read(relative)
            try:
                meta.verify_length_and_hashes(data)
            except Exception as e:
                raise VerificationError(f"{relative}: changed while published ({e})") from e
            return data

        return later, pinned
    before = stamps.stat(relative) if stamps is not None else None
    data = _read_listed(walk, relative, meta)
    if data is None:
        return None
    if pinned is None:
        return data, hashlib.sha256(data).hexdigest()
    if stamps is not None:
        stamps.stamp(relative, pinned, before)
    return data, pinned


class LazyRecallError(VerificationError):
    """A recalled role's memo entry whose body cannot be decoded (damaged since its header was
    read): the caller walks again without the flat path."""


@dataclass(frozen=True)
class LazyRole:
    """A role recalled from its memo entry's header: the summary now, the facts on demand."""

    memo: VerifyMemo
    key: str
    name: str
    version: int
    expires: datetime
    image_count: int
    pilots: bool
    manufacturers: dict[str, str]
    advisory_targets: tuple[tuple[str, int, str], ...]
    delegations: Delegations | None

    def facts(self) -> RoleFacts:
        """The remembered facts, decoded and checked against this summary.

        Raises:
            LazyRecallError: the entry is gone or damaged.
        """
        facts = self.memo.load(self.key, self.name)
        if facts is None or facts.version != self.version or len(facts.images) != self.image_count:
            raise LazyRecallError(f"verify memo: the entry of {self.name} is no longer usable")
        return facts

    def as_delegator(self) -> Targets:
        """A ``Targets`` carrying only the role's delegations, to verify its bins against."""
        return Targets(version=self.version, expires=self.expires, delegations=self.delegations)


def _triples(value: Any) -> tuple[tuple[str, int, str], ...]:
    out = []
    for path, length, sha256 in value:
        if type(path) is not str or type(length) is not int or type(sha256) is not str:
            raise ValueError("advisory target")
        out.append((path, length, sha256))
    return tuple(out)


def lazy_role(memo: VerifyMemo, key: str, name: str) -> LazyRole | None:
    """The role ``name`` recalled from the header of its entry ``key``; None is a miss."""
    summary = memo.recall_header(key, name)
    if summary is None:
        return None
    try:
        expires = datetime.fromisoformat(summary["expires"])
        makers = summary["manufacturers"]
        if type(makers) is not dict or not all(
            type(k) is str and type(v) is str for k, v in makers.items()
        ):
            raise ValueError("manufacturers")
        raw = summary["delegations"]
        delegations = None if raw is None else Delegations.from_dict(dict(raw))
        role = LazyRole(
            memo,
            key,
            name,
            int(summary["version"]),
            expires,
            int(summary["images"]),
            bool(summary["pilots"]),
            dict(makers),
            _triples(summary["advisories"]),
            delegations,
        )
        if expires.tzinfo is None or role.image_count < 0:
            raise ValueError("expires or count")
    except Exception:  # a damaged header is a miss: the role is verified in full
        memo.hits -= 1
        memo.misses += 1
        return None
    return role


class LazyImages(Sequence[PublishedImage]):
    """A verified library's images, where the recalled roles' images are decoded on first use.

    ``len`` and ``any_pilot`` never decode; ``fresh`` holds the images of the roles this walk
    verified in full. Iterating decodes everything once, in the walk's order, with the published
    withdrawals applied, giving exactly the images a full walk gives."""

    def __init__(
        self,
        parts: Sequence[tuple[PublishedImage, ...] | LazyRole],
        withdrawn: Mapping[str, Withdrawal],
    ) -> None:
        self._parts = list(parts)
        self._withdrawn = withdrawn
        self._count = sum(p.image_count if isinstance(p, LazyRole) else len(p) for p in self._parts)
        self._all: tuple[PublishedImage, ...] | None = None

    def _withdraw(self, images: Sequence[PublishedImage]) -> tuple[PublishedImage, ...]:
        get = self._withdrawn.get
        return tuple(replace(i, withdrawal=get(i.target_path)) for i in images)

    @property
    def fresh(self) -> tuple[PublishedImage, ...]:
        """The images of the roles verified in full by this walk."""
        return self._withdraw([i for p in self._parts if not isinstance(p, LazyRole) for i in p])

    @property
    def any_pilot(self) -> bool:
        """Whether any image is in a pilot (release state is the site's to judge)."""
        return any(
            p.pilots if isinstance(p, LazyRole) else any(i.cfl.pilot is not None for i in p)
            for p in self._parts
        )

    def _materialised(self) -> tuple[PublishedImage, ...]:
        if self._all is None:
            images: list[PublishedImage] = []
            for part in self._parts:
                images.extend(part.facts().images if isinstance(part, LazyRole) else part)
            self._all = self._withdraw(images)
        return self._all

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> PublishedImage: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[PublishedImage]: ...

    def __getitem__(self, index: int | slice) -> PublishedImage | Sequence[PublishedImage]:
        return self._materialised()[index]

    def __iter__(self) -> Iterator[PublishedImage]:
        return iter(self._materialised())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LazyImages({self._count} images)"


class _Paths(Collection[str]):
    """One manufacturer's target paths: the changed roles' now, the recalled roles' on a miss."""

    def __init__(self, known: Collection[str], lazy: Sequence[LazyRole]) -> None:
        self._known = known
        self._lazy = lazy
        self._all: frozenset[str] | None = None

    def _everything(self) -> frozenset[str]:
        if self._all is None:
            paths = set(self._known)
            for role in self._lazy:
                paths.update(role.facts().paths)
            self._all = frozenset(paths)
        return self._all

    def __contains__(self, path: object) -> bool:
        return path in self._known or (bool(self._lazy) and path in self._everything())

    def __iter__(self) -> Iterator[str]:
        return iter(self._everything())

    def __len__(self) -> int:
        return len(self._everything())


class OwnedPaths(Mapping[str, Collection[str]]):
    """Manufacturer role -> every target path of it and its bins, where the paths of recalled
    roles are decoded only when a reference names a path no changed role holds."""

    def __init__(self, known: Mapping[str, set[str]], lazy: Mapping[str, list[LazyRole]]) -> None:
        self._owners = set(known) | set(lazy)
        self._paths = {o: _Paths(known.get(o, set()), lazy.get(o, [])) for o in self._owners}

    def __getitem__(self, owner: str) -> Collection[str]:
        return self._paths[owner]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._owners))

    def __len__(self) -> int:
        return len(self._owners)
