"""Metadata traffic of a supplier's client: cold start with 1 and with 3 manufacturers in the estate,
beside loading every manufacturer's role (what a client that ignored its estate would fetch), and a
refresh with nothing new.

The library is real (repo_tool's own code, the test factory), 20 manufacturers with 10 images each;
a counting fetcher serves the published folder and adds up the bytes ngclient asked for.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from client.trust.session import Session, SessionPaths
from factory import FolderFetcher, LibraryFactory, make_entry, make_image, mi_sha

MANUFACTURERS = [f"{0x1100 + n:04X}" for n in range(20)]
IMAGES_PER_MANUFACTURER = 10


class CountingFetcher(FolderFetcher):
    """A FolderFetcher that adds up the bytes it serves."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.bytes = 0

    def _fetch(self, url: str) -> Iterator[bytes]:
        chunks = list(super()._fetch(url))
        self.bytes += sum(len(c) for c in chunks)
        return iter(chunks)


def build_library(tmp: Path) -> LibraryFactory:
    factory = LibraryFactory(tmp)
    images: dict[str, list[bytes]] = {}
    entries = []
    for mfr in MANUFACTURERS:
        images[mfr] = [make_image(mfr, fw) for fw in range(1, IMAGES_PER_MANUFACTURER + 1)]
        entries += [
            make_entry(f"CPL-{mfr}-{fw}", mfr=mfr, fw=f"{fw:08X}", image_sha=mi_sha(img))
            for fw, img in enumerate(images[mfr], start=1)
        ]
    factory.import_cpl(entries)
    for mfr in MANUFACTURERS:
        factory.add_manufacturer(mfr)
    factory.publish()
    for fw in range(1, IMAGES_PER_MANUFACTURER + 1):
        for mfr in MANUFACTURERS:
            result = factory.ingest(
                factory.submit(images[mfr][fw - 1], [f"CPL-{mfr}-{fw}"], mfr=mfr)
            )
            assert result.status == "accepted", result.messages
        factory.publish()  # one publish per round: each manufacturer's next version builds on it
    return factory


def cold_start_bytes(
    factory: LibraryFactory, tmp: Path, manufacturers: list[str] | None
) -> tuple[int, int]:
    fetcher = CountingFetcher(factory.out)
    home = Path(tempfile.mkdtemp(dir=tmp))
    session = Session(
        SessionPaths(home / "metadata", home / "cache"),
        fetcher.base_url,
        fetcher,
        bootstrap_root=factory.root_bytes,
    )
    session.verified_targets(manufacturers)
    session.cpl()
    cold = fetcher.bytes
    warm = CountingFetcher(factory.out)
    Session(SessionPaths(home / "metadata", home / "cache"), warm.base_url, warm).refresh()
    return cold, warm.bytes


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        factory = build_library(tmp)
        print(
            f"client metadata traffic: library of {len(MANUFACTURERS)} manufacturers x {IMAGES_PER_MANUFACTURER} images "
            "(cold start = root chain, timestamp, snapshot, targets, CPL and the estate's roles)"
        )
        print(f"  {'estate':<32}{'cold start bytes':>18}{'refresh, nothing new':>24}")
        for label, wanted in (
            ("1 manufacturer", MANUFACTURERS[:1]),
            ("3 manufacturers", MANUFACTURERS[:3]),
            (f"baseline: all {len(MANUFACTURERS)} roles", None),
        ):
            cold, warm = cold_start_bytes(factory, tmp, wanted)
            print(f"  {label:<32}{cold:>18,}{warm:>24,}")


if __name__ == "__main__":
    main()
