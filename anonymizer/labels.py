"""Security labels and the reference's rewrite of `meta` (docs/reference.md section 3.8)."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import orjson

from anonymizer.errors import ConfigurationError
from anonymizer.methods.base import (
    ABSTRACT,
    CRYPTOHASH,
    ENCRYPT,
    GENERALIZE,
    PERTURB,
    REDACT,
    SUBSTITUTE,
)
from anonymizer.reuse import MAX_KEY_BYTES

_V3 = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
# In the order the reference appends them.
LABELS = (
    (REDACT, {"system": _V3, "code": "REDACTED", "display": "redacted"}),
    (ABSTRACT, {"system": _V3, "code": "ABSTRED", "display": "abstracted"}),
    (CRYPTOHASH, {"system": _V3, "code": "CRYTOHASH", "display": "cryptographic hash function"}),
    (ENCRYPT, {"system": _V3, "code": "MASKED", "display": "masked"}),
    (PERTURB, {"code": "PERTURBED", "display": "exact value is replaced with another exact value"}),
    (SUBSTITUTE, {"code": "SUBSTITUTED", "display": "exact value is replaced with a predefined value"}),
    (GENERALIZE, {"code": "GENERALIZED", "display": "exact value is replaced with a general value"}),
)
META_ORDER = ("id", "extension", "versionId", "lastUpdated", "source", "profile", "security", "tag")

_INSTANT = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?)?)?"
    r"(Z|[+-]\d{2}:\d{2})?",
    re.ASCII,
)


def empty_resource(resource_type: str) -> dict:
    """What `processingErrors: skip` leaves of a resource."""
    return {"resourceType": resource_type, "meta": {"security": [dict(LABELS[0][1])]}}


def format_last_updated(value: str) -> str:
    """The value as .NET's DateTimeOffset prints it: `yyyy-MM-ddTHH:mm:ss[.FFFFFFF]zzz`."""
    m = _INSTANT.fullmatch(value)
    if m is None:
        raise ConfigurationError(
            "meta.lastUpdated is no longer an instant after anonymization (the reference fails "
            "here too): let no rule other than dateShift, redact or keep reach it"
        )
    year, month, day, hour, minute, second, fraction, offset = m.groups()
    text = f"{year}-{month or '01'}-{day or '01'}T{hour or '00'}:{minute or '00'}:{second or '00'}"
    fraction = (fraction or "")[:7].rstrip("0")
    if fraction:
        text += "." + fraction
    return text + ("+00:00" if offset in (None, "Z") else offset)


# The codings added for each combination of operations (seven bits: 128 of them), made once.
_ADDED: tuple[tuple[dict, ...], ...] = tuple(
    tuple(coding for op, coding in LABELS if op & ops) for ops in range(1 << len(LABELS))
)


def add_security_labels(resource: dict, ops: int) -> None:
    labels = _ADDED[ops]
    meta = resource.get("meta")
    if not meta:  # the common case in exports without meta.security: append a new meta
        resource["meta"] = {"security": [dict(coding) for coding in labels]}
        return
    security = meta.get("security")
    if security is None:
        security = [dict(coding) for coding in labels]
    else:
        present = {str(c.get("code", "")).lower() for c in security if isinstance(c, dict)}
        security = [*security, *(dict(c) for c in labels if c["code"].lower() not in present)]
    rebuilt: dict[str, Any] = {k: security if k == "security" else meta[k] for k in _meta_order(tuple(meta))}
    if "lastUpdated" in rebuilt:
        rebuilt["lastUpdated"] = format_last_updated(rebuilt["lastUpdated"])
    resource["meta"] = rebuilt  # in place if it existed, appended last otherwise


class SharedMetas:
    """Labelled metas a thread made for outputs serialised at once (reuse.py): exports repeat the
    same meta tag, so a meta seen before with the same operations takes the labelled meta made
    then. One per thread's runtime (the objects are shared by that thread's outputs only)."""

    LIMIT = 1024

    __slots__ = ("last", "table")

    def __init__(self) -> None:
        self.table: dict[tuple[bytes, int], dict] = {}
        # The last one: its walk output (one object while reuse.py remembers it), operations and
        # labelled result; held, so `is` cannot meet a recycled object.
        self.last: tuple[Any, int, dict] = (None, 0, {})


def add_shared_security_labels(resource: dict, ops: int, metas: SharedMetas) -> None:
    """add_security_labels for outputs serialised at once, sharing labelled metas (SharedMetas)."""
    meta = resource.get("meta")
    last_meta, last_ops, labelled = metas.last
    if meta is last_meta and ops == last_ops and labelled:
        resource["meta"] = labelled  # in place if it existed, appended last otherwise
        return
    text = orjson.dumps(meta) if meta else b""
    if len(text) > MAX_KEY_BYTES:
        add_security_labels(resource, ops)
        return
    key = (text, ops)
    table = metas.table
    found = table.get(key)
    if found is None:
        add_security_labels(resource, ops)
        if len(table) >= metas.LIMIT:
            table.clear()
        found = table[key] = resource["meta"]
    else:
        resource["meta"] = found  # in place if it existed, appended last otherwise
    metas.last = (meta, ops, found)


@lru_cache(maxsize=256)
def _meta_order(keys: tuple[str, ...]) -> tuple[str, ...]:
    """The reference's order of meta's keys, `security` included (a few key sets repeat)."""
    present = {*keys, "security"}
    return tuple(k for name in META_ORDER for k in (name, "_" + name) if k in present)
