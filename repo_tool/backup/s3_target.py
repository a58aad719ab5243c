"""A backup in S3-compatible object storage, over the same client, URL rules and error translation
as publishing (repo_tool/publish/s3.py): boto3's standard credential chain, path-style addressing
for ``--endpoint-url`` servers, one ``error:`` line per failure. Objects are named by their hash, so
rewriting one is harmless; a manifest is put only if its key is free (``If-None-Match: *``).
"""

from __future__ import annotations

from metadata_templates.errors import ConfigurationError
from repo_tool.backup.manifest import (
    MANIFEST_DIR,
    MARKER,
    OBJECTS_DIR,
    is_manifest_name,
    marker_bytes,
    object_key,
)
from repo_tool.publish.s3 import ListedObject, S3Bucket, make_s3_client, parse_s3_url


class S3Target:
    """``s3://BUCKET/PREFIX`` as a backup target."""

    def __init__(self, bucket: S3Bucket, *, option: str = "--to") -> None:
        self.bucket = bucket
        self.option = option
        self.url = bucket.location.url
        self._listing: dict[str, ListedObject] | None = None
        self._added: set[str] = set()

    @classmethod
    def of(cls, spec: str, *, endpoint_url: str | None, option: str) -> S3Target:
        """Raises:
        ConfigurationError: a bad URL or endpoint, or an unknown AWS profile."""
        location = parse_s3_url(spec, field=option)
        return cls(S3Bucket(make_s3_client(endpoint_url), location), option=option)

    def _list(self) -> dict[str, ListedObject]:
        if self._listing is None:
            self._listing = self.bucket.list()  # once per run: the prefix may hold 100,000 keys
        return self._listing

    def prepare(self) -> None:
        listing = self._list()
        if MARKER in listing:
            return
        if listing:
            raise ConfigurationError(
                f"{self.option}: found {self.url} holding {sorted(listing)[0]!r} and no {MARKER}, "
                "expected an empty prefix, or one `cfl-repo backup` wrote before",
                hint="a backup never writes among someone else's objects; choose another prefix",
            )
        self.bucket.put(MARKER, marker_bytes(), replace=False)

    def check_readable(self) -> None:
        if MARKER not in self._list():
            raise ConfigurationError(
                f"{self.option}: found no {MARKER} under {self.url}, expected a prefix "
                "`cfl-repo backup` wrote"
            )

    def objects(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for key, listed in self._list().items():
            parts = key.split("/")
            if len(parts) == 3 and parts[0] == OBJECTS_DIR and parts[2][:2] == parts[1]:
                found[parts[2]] = listed.size
        return found

    def put_object(self, sha256: str, data: bytes) -> None:
        self.bucket.put(object_key(sha256), data, replace=True)

    def get_object(self, sha256: str, size: int) -> bytes | None:
        return self.bucket.get(object_key(sha256))

    def manifests(self) -> list[str]:
        prefix = f"{MANIFEST_DIR}/"
        listed = {key.removeprefix(prefix) for key in self._list() if key.startswith(prefix)}
        return sorted(name for name in listed | self._added if is_manifest_name(name))

    def get_manifest(self, name: str) -> bytes | None:
        return self.bucket.get(f"{MANIFEST_DIR}/{name}")

    def put_manifest(self, name: str, data: bytes) -> bool:
        written = self.bucket.put(f"{MANIFEST_DIR}/{name}", data, replace=False)
        if written:
            self._added.add(name)
        return written
