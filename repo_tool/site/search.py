"""The website's search index, sharded so the first search at 100,000 images fetches well under 1 MB.

Layout (under the site folder)::

    search/meta.json          {"schema_version", "generated", "count", "rows_per_shard",
                               "prefix_length", "shards": [prefix, ...]}: what search.js reads first
    search/w-<prefix>.json    indexed words starting with <prefix>, each with the ids of the images
                              whose row holds it
    search/rows-<k>.json      the display rows of images k*ROWS_PER_SHARD .. (k+1)*ROWS_PER_SHARD-1

Word shards form a trie: words are grouped by their first PREFIX_LENGTH characters, and a group
whose shard would exceed SHARD_LIMIT bytes is split by the next character (its words no longer than
the prefix stay in the parent's shard), recursively. So a shard stays small even when 100,000 words
share a prefix (firmware versions ``0000....``), and the layout is a function of the words alone: a
shard once split stays split as the library grows, which lets a build merge new words into it and
still produce what a full build would. A query word ``t`` is answered by the shards whose prefix is a
prefix of ``t`` (its ancestors and its leaf) or starts with ``t``.

An image's id is its position in publication order, oldest first (0 is the first image ever
listed), so ids stay put when images are added: a new image gets the next id, lands in the newest
rows shard, and changes only the word shards of its own words. The ids a query
yields pick the rows shards to fetch for the (newest-first) rows shown.

Posting lists are sorted ids, delta-encoded with runs: a positive number ``d`` steps the current id
by ``d`` (starting from -1), a negative ``-k`` steps it by one ``k`` times. Words every image holds
(a device type in a single-type library, "compliance") therefore cost a few bytes.

Everything here is pure: values in, ``(relative path, bytes)`` out. ``static/search.js`` implements
the same word rule (``words``), shard naming (``shard_name``) and decoding (``decode_ids``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

SEARCH_SCHEMA_VERSION = 1
PREFIX_LENGTH = 2
ROWS_PER_SHARD = 16
SHARD_LIMIT = 24_000
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
    return _extended([], -1, sorted(set(ids)))


def _extended(out: list[int], previous: int, ascending: Iterable[int]) -> list[int]:
    """``out``, the encoding of ids up to ``previous``, extended in place with ``ascending`` (ids
    in increasing order, each above ``previous``)."""
    for current in ascending:
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


def meta_bytes(count: int, generated: str, shards: Iterable[str]) -> bytes:
    return _dump(
        {
            "schema_version": SEARCH_SCHEMA_VERSION,
            "generated": generated,
            "count": count,
            "rows_per_shard": ROWS_PER_SHARD,
            "prefix_length": PREFIX_LENGTH,
            "shards": sorted(shards),
        }
    )


def rows_shard_bytes(rows: Sequence[Sequence[Any]]) -> bytes:
    """One rows shard; ``rows`` in id order (see ``repo_tool.site.render._search_row`` for the fields)."""
    body = ",\n".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in rows)
    return f'{{"schema_version":{SEARCH_SCHEMA_VERSION},"rows":[\n{body}\n]}}\n'.encode()


def word_shard_bytes(postings: Mapping[str, Iterable[int]]) -> bytes:
    """One word shard: word -> encoded ids, words sorted (byte-stable output)."""
    return _encoded_shard_bytes({word: encode_ids(ids) for word, ids in postings.items()})


def _encoded_shard_bytes(encoded: Mapping[str, list[int]]) -> bytes:
    doc = {word: encoded[word] for word in sorted(encoded)}
    return _dump({"schema_version": SEARCH_SCHEMA_VERSION, "words": doc})


def parse_word_shard(data: bytes) -> dict[str, list[int]]:
    """A word shard's bytes -> word -> ids.

    Raises:
        ValueError: not a word shard of this schema version.
    """
    return {word: decode_ids(ids) for word, ids in _parse_encoded(data).items()}


def _parse_encoded(data: bytes) -> dict[str, list[int]]:
    """A word shard's bytes -> word -> encoded ids, checked but not expanded.

    Raises:
        ValueError: not a word shard of this schema version, or a malformed posting list.
    """
    doc = json.loads(data)
    if not isinstance(doc, dict) or doc.get("schema_version") != SEARCH_SCHEMA_VERSION:
        raise ValueError("word shard: unexpected schema_version")
    found = doc.get("words")
    if not isinstance(found, dict):
        raise ValueError("word shard: no words")
    out: dict[str, list[int]] = {}
    for word, encoded in found.items():
        if not isinstance(encoded, list) or not all(
            type(step) is int and step != 0 for step in encoded
        ):
            raise ValueError(f"word shard: word {word!r}: expected a list of non-zero steps")
        out[str(word)] = encoded
    return out


def _last_id(encoded: Sequence[int]) -> int:
    """The largest id of an encoded posting list (-1 when empty), without expanding it."""
    return sum(step if step > 0 else -step for step in encoded) - 1


def append_ids(encoded: list[int], ids: Iterable[int]) -> list[int] | None:
    """``encode_ids(decode_ids(encoded) + ids)`` when every id in ``ids`` is above the list's last
    id, computed on the encoded form: appending one image to a word every image holds costs a few
    steps, not a decode and re-encode of 100,000 ids. None when some id is not above the last
    (the caller then decodes and merges)."""
    fresh = sorted(set(ids))
    previous = _last_id(encoded)
    if fresh and fresh[0] <= previous:
        return None
    return _extended(list(encoded), previous, fresh)


Postings = dict[str, set[int]]
Encoded = dict[str, list[int]]


def postings_of(tokens: Iterable[tuple[int, Iterable[str]]]) -> Postings:
    """(id, words) pairs -> word -> ids. Words shorter than PREFIX_LENGTH are not indexed
    (search.js asks for at least that many characters)."""
    postings: Postings = {}
    for image_id, image_words in tokens:
        for word in image_words:
            if len(word) >= PREFIX_LENGTH:
                postings.setdefault(word, set()).add(image_id)
    return postings


def _place(prefix: str, words: Encoded, out: dict[str, Encoded]) -> None:
    """Put ``words`` (all starting with ``prefix``) into the shard ``prefix``, split if too big."""
    if all(len(w) == len(prefix) for w in words) or len(_encoded_shard_bytes(words)) <= SHARD_LIMIT:
        out[prefix] = words
        return
    out[prefix] = {w: ids for w, ids in words.items() if len(w) == len(prefix)}
    children: dict[str, Encoded] = {}
    for word, ids in words.items():
        if len(word) > len(prefix):
            children.setdefault(word[: len(prefix) + 1], {})[word] = ids
    for child, child_words in sorted(children.items()):
        _place(child, child_words, out)


def layout(postings: Postings) -> dict[str, Postings]:
    """Shard prefix -> its words, for a whole library (see the module doc)."""
    return {
        prefix: {word: set(decode_ids(ids)) for word, ids in words.items()}
        for prefix, words in _layout_encoded(postings).items()
    }


def _layout_encoded(postings: Postings) -> dict[str, Encoded]:
    groups: dict[str, Encoded] = {}
    for word, ids in postings.items():
        groups.setdefault(word[:PREFIX_LENGTH], {})[word] = encode_ids(ids)
    out: dict[str, Encoded] = {}
    for prefix, words in sorted(groups.items()):
        _place(prefix, words, out)
    return out


def word_shards(tokens: Iterable[tuple[int, Iterable[str]]]) -> dict[str, bytes]:
    """Every word shard for a whole library: shard prefix -> bytes."""
    return {p: _encoded_shard_bytes(w) for p, w in _layout_encoded(postings_of(tokens)).items()}


def merge_shards(
    shards: Iterable[str],
    read: Callable[[str], bytes | None],
    tokens: Iterable[tuple[int, Iterable[str]]],
) -> dict[str, bytes]:
    """The shards that change when the images in ``tokens`` are added to a library whose word
    shards are ``shards`` (prefixes), read through ``read``: prefix -> new bytes. The result, with
    the untouched shards, is what ``word_shards`` gives for the whole grown library. Merging the
    same ids twice gives the same bytes, so a re-run after a crash is harmless.

    New images have the highest ids, so their ids are appended to the encoded posting lists
    (``append_ids``); a list is decoded only when an id is not above its last one (a re-run).

    Raises:
        ValueError: a shard read is not a word shard.
    """
    existing = sorted(shards)
    # a shard is split when another shard's prefix extends it (sorted order puts it right after)
    split = {p for p, q in itertools.pairwise(existing) if q.startswith(p)}
    by_leaf: dict[str, Postings] = {}
    for word, ids in postings_of(tokens).items():
        prefix = word[:PREFIX_LENGTH]
        while prefix in split and len(word) > len(prefix):
            prefix = word[: len(prefix) + 1]
        by_leaf.setdefault(prefix, {}).setdefault(word, set()).update(ids)
    out: dict[str, Encoded] = {}
    for prefix, added in sorted(by_leaf.items()):
        previous = read(prefix)
        words = _parse_encoded(previous) if previous else {}
        for word, ids in added.items():
            known = words.get(word, [])
            appended = append_ids(known, ids)
            words[word] = (
                appended if appended is not None else encode_ids([*decode_ids(known), *ids])
            )
        if prefix in split:
            out[prefix] = words  # a split parent holds only words as long as its prefix
        else:
            _place(prefix, words, out)
    return {p: _encoded_shard_bytes(w) for p, w in out.items()}


def decode_shard_name(name: str) -> str:
    """The inverse of ``shard_name``.

    Raises:
        ValueError: not a name ``shard_name`` produces.
    """
    out: list[str] = []
    i = 0
    while i < len(name):
        c = name[i]
        if c in _PLAIN:
            out.append(c)
            i += 1
        elif c == "_":
            end = name.index("-", i)
            out.append(chr(int(name[i + 1 : end], 16)))
            i = end + 1
        else:
            raise ValueError(f"shard name {name!r}: unexpected {c!r}")
    return "".join(out)
