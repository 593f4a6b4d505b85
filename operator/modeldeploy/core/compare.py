"""Does a live object already carry everything we would apply? Then the apply can be skipped."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

_SUFFIXES = {
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


def parse_quantity(value: Any) -> Decimal | None:
    """A Kubernetes quantity as a number ('500m' -> 0.5), or None when it is not one."""
    match = _QUANTITY.match(str(value))
    if not match or match.group(2) not in _SUFFIXES:
        return None
    try:
        return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]
    except InvalidOperation:
        return None


def _scalar_equal(desired: Any, live: Any) -> bool:
    if desired == live:
        return True
    # The API server canonicalises quantities ("1000m" -> "1") and int-or-strings.
    if isinstance(desired, (str, int)) and isinstance(live, (str, int)) and not isinstance(desired, bool):
        left, right = parse_quantity(desired), parse_quantity(live)
        return left is not None and left == right
    return False


def _omitted_when_empty(value: Any) -> bool:
    """Go's `omitempty` drops zero values, so a missing field equals a desired 0, "", false, [] or {}."""
    return value in (0, "", False) or value == [] or value == {}


def contains(live: Any, desired: Any) -> bool:
    """True when every field of `desired` is present in `live` with an equal value.

    Fields only the server sets (defaults, status, clusterIP) are ignored. Lists must match item by item.
    """
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            contains(live[k], v) if k in live else _omitted_when_empty(v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(lv, dv) for lv, dv in zip(live, desired, strict=True))
        )
    return _scalar_equal(desired, live)
