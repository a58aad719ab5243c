"""The website's search index, sharded so the first search at 100,000 images fetches well under 1 MB.

Layout (under the site folder)::

    search/meta.json          {"schema_version", "generated", "count", "rows_per_shard",
                               "prefix_length"}: what search.js reads first (tiny)
    search/w-<prefix>.json    every indexed word starting with <prefix> (its first PREFIX_LENGTH
                              characters), each with the ids of the images whose row holds it
    search/rows-<k>.json      the display rows of images k*ROWS_PER_SHARD .. (k+1)*ROWS_PER_SHARD-1

An image's id is its position in publication order, oldest first (0 is the first image ever
listed), so ids stay put when images are added: a new image gets the next id, lands in the newest
rows shard, and changes only the word shards of its own words. A query term of at least
PREFIX_LENGTH characters is answered from one word shard; the ids it yields pick the rows shards to
fetch for the (newest-first) rows shown.

Posting lists are sorted ids, delta-encoded with runs: a positive number ``d`` steps the current id
by ``d`` (starting from -1), a negative ``-k`` steps it by one ``k`` times. Words every image holds
(a device type in a single-type library, "compliance") therefore cost a few bytes.

Everything here is pure: values in, ``(relative path, bytes)`` out. ``static/search.js`` implements
the same word rule (``words``), shard naming (``shard_name``) and decoding (``decode_ids``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

SEARCH_SCHEMA_VERSION = 1
PREFIX_LENGTH = 2
ROWS_PER_SHARD = 64
SEARCH_DIR = "search"
META_PATH = f"{SEARCH_DIR}/meta.json"
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


def words(parts: Iterable[str]) -> list[str]:
    """The searchable words of a row: every whitespace-separated word, lower-cased, in order.

    A query word matches a row when it is the start of one of these words.
    """
    return " ".join(parts).lower().split()


def shard_name(prefix: str) -> str:
    """A file-name-safe spelling of a word prefix: ``a``-``z`` and ``0``-``9`` as they are, any
    other character as ``_<hex code point>-`` (so ``é1`` is ``_e9-1``, never ambiguous)."""
    return "".join(c if c in _PLAIN else f"_{ord(c):x}-" for c in prefix)


def word_shard_path(prefix: str) -> str:
    return f"{SEARCH_DIR}/w-{shard_name(prefix)}.json"


def rows_shard_path(shard: int) -> str:
    return f"{SEARCH_DIR}/rows-{shard}.json"


def encode_ids(ids: Iterable[int]) -> list[int]:
    """Sorted, de-duplicated ids -> the run-length delta encoding described in the module doc."""
    out: list[int] = []
    previous = -1
    for current in sorted(set(ids)):
        step = current - previous
        if step == 1 and out and out[-1] < 0:
            out[-1] -= 1
        elif step == 1:
            out.append(-1)
        else:
            out.append(step)
        previous = current
    return out


def decode_ids(encoded: Sequence[int]) -> list[int]:
    """The inverse of ``encode_ids``.

    Raises:
        ValueError: a zero step (not produced by ``encode_ids``).
    """
    ids: list[int] = []
    current = -1
    for step in encoded:
        if step == 0:
            raise ValueError("posting list: found step 0, expected a non-zero step")
        if step > 0:
            current += step
            ids.append(current)
        else:
            for _ in range(-step):
                current += 1
                ids.append(current)
    return ids


def _dump(doc: Mapping[str, Any]) -> bytes:
    return (json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def meta_bytes(count: int, generated: str) -> bytes:
    return _dump(
        {
            "schema_version": SEARCH_SCHEMA_VERSION,
            "generated": generated,
            "count": count,
            "rows_per_shard": ROWS_PER_SHARD,
            "prefix_length": PREFIX_LENGTH,
        }
    )


def rows_shard_bytes(rows: Sequence[Sequence[Any]]) -> bytes:
    """One rows shard; ``rows`` in id order (see ``repo_tool.site._search_row`` for the fields)."""
    body = ",\n".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in rows)
    return f'{{"schema_version":{SEARCH_SCHEMA_VERSION},"rows":[\n{body}\n]}}\n'.encode()


def word_shard_bytes(postings: Mapping[str, Iterable[int]]) -> bytes:
    """One word shard: word -> encoded ids, words sorted (byte-stable output)."""
    doc = {word: encode_ids(postings[word]) for word in sorted(postings)}
    return _dump({"schema_version": SEARCH_SCHEMA_VERSION, "words": doc})


def parse_word_shard(data: bytes) -> dict[str, list[int]]:
    """A word shard's postings, decoded.

    Raises:
        ValueError: not a word shard of this schema version.
    """
    doc = json.loads(data)
    if not isinstance(doc, dict) or doc.get("schema_version") != SEARCH_SCHEMA_VERSION:
        raise ValueError("word shard: unexpected schema_version")
    found = doc.get("words")
    if not isinstance(found, dict):
        raise ValueError("word shard: no words")
    return {str(word): decode_ids(ids) for word, ids in found.items()}


def postings_by_shard(
    tokens: Iterable[tuple[int, Iterable[str]]],
) -> dict[str, dict[str, set[int]]]:
    """(id, words) pairs -> shard prefix -> word -> ids. Words shorter than PREFIX_LENGTH are not
    indexed (search.js asks for at least that many characters)."""
    shards: dict[str, dict[str, set[int]]] = {}
    for image_id, image_words in tokens:
        for word in image_words:
            if len(word) < PREFIX_LENGTH:
                continue
            shards.setdefault(word[:PREFIX_LENGTH], {}).setdefault(word, set()).add(image_id)
    return shards


def word_shards(tokens: Iterable[tuple[int, Iterable[str]]]) -> Iterator[tuple[str, bytes]]:
    """Every word shard for a whole library."""
    for prefix, postings in sorted(postings_by_shard(tokens).items()):
        yield word_shard_path(prefix), word_shard_bytes(postings)


def merge_word_shard(previous: bytes | None, added: Mapping[str, Iterable[int]]) -> bytes:
    """A word shard with ``added`` postings merged into the previous shard's (idempotent: merging the
    same ids twice gives the same bytes, so a re-run after a crash is harmless).

    Raises:
        ValueError: ``previous`` is not a word shard.
    """
    postings: dict[str, set[int]] = {}
    if previous is not None:
        postings = {w: set(ids) for w, ids in parse_word_shard(previous).items()}
    for word, ids in added.items():
        postings.setdefault(word, set()).update(ids)
    return word_shard_bytes(postings)
