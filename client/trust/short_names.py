"""Short, unique names for image targets, that people can read in a table and type back.

A target path (``121D/ESME-0001-ACDCACDC-3f2a9c1d0b7e4a51.ota``) is 44 characters: too wide for an
80-column table beside the other columns. Its short name is the manufacturer ID and the fewest
leading digits of the path's hash part that no other image of that manufacturer shares (at least
``MIN_DIGITS``): ``121D/3f2a``. ``cfl download`` accepts a short name (any unique prefix of the hash
part, in fact) as well as the full path.

Short names are unique within the verified catalogue they were made from. A later image may share
the digits; resolving then fails with the candidates named, never picks one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from metadata_templates import naming
from metadata_templates.errors import ConfigurationError

MIN_DIGITS = 4
_HEX = frozenset("0123456789abcdef")


def _hash_part(target: str) -> str:
    # image_target_path: <MFR>/<TYPE>-<IMAGE TYPE>-<FIRMWARE>-<16 hex>.ota
    return target.rsplit("-", 1)[-1].removesuffix(naming.IMAGE_SUFFIX)


def short_names(targets: Iterable[str]) -> dict[str, str]:
    """Each image target path's short name; other paths keep their full name.

    Pure and independent of order: a name depends only on the set of targets given.
    """
    by_manufacturer: dict[str, list[str]] = defaultdict(list)
    names: dict[str, str] = {}
    for target in targets:
        manufacturer = naming.manufacturer_of_target(target)
        if manufacturer is None:
            names[target] = target
        else:
            by_manufacturer[manufacturer].append(target)
    for manufacturer, paths in by_manufacturer.items():
        hashes = sorted((_hash_part(p), p) for p in set(paths))
        for index, (digits, path) in enumerate(hashes):
            # The shortest unique prefix only has to differ from the sorted neighbours.
            need = MIN_DIGITS
            for neighbour in (index - 1, index + 1):
                if 0 <= neighbour < len(hashes):
                    other = hashes[neighbour][0]
                    common = next(
                        (i for i, (a, b) in enumerate(zip(digits, other, strict=True)) if a != b),
                        len(digits),
                    )
                    need = max(need, common + 1)
            names[path] = f"{manufacturer}/{digits[: min(need, len(digits))]}"
    return names


def resolve_target(name: str, targets: Iterable[str]) -> str | None:
    """The target a name given on the command line means: a full path or a short name.

    Args:
        name: what the user typed.
        targets: every image target path of the verified catalogue (at least of the name's
            manufacturer).

    Returns:
        The full target path, or None when nothing matches (the caller reports it).

    Raises:
        ConfigurationError: a short name that matches several images.
    """
    known = set(targets)
    if name in known:
        return name
    manufacturer, slash, digits = name.partition("/")
    digits = digits.lower()
    if not slash or len(digits) < MIN_DIGITS or not set(digits) <= _HEX:
        return None
    matches = sorted(
        t
        for t in known
        if naming.manufacturer_of_target(t) == manufacturer.upper()
        and _hash_part(t).startswith(digits)
    )
    if len(matches) > 1:
        raise ConfigurationError(
            f"TARGET: found {name!r}, which names {len(matches)} images "
            f"({', '.join(matches)}), expected a unique name",
            hint="add hash digits, or give the full target path (cfl list --wide)",
        )
    return matches[0] if matches else None
