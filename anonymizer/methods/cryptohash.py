"""cryptoHash: HMAC-SHA256 (hex) of the value; of a Reference.reference only the id part, so that
hashed references still point at hashed ids (docs/reference.md section 4.4)."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from anonymizer.methods.base import CRYPTOHASH, Method, PrimitiveAction, ResourceState, Shared, core_form
from anonymizer.r4.model import RESOURCE_TYPES, Element
from anonymizer.r4.primitives import value_text

if TYPE_CHECKING:
    from anonymizer.config import Parameters

_CACHE_LIMIT = 1 << 14  # bounded: a multi-GB export must not grow memory


class _Recent(threading.local):
    """The hashes of one thread (threading.local runs this per thread): ids and references repeat
    across a patient's resources."""

    def __init__(self) -> None:
        self.values = RecentCache()  # text -> its hash
        self.references = RecentCache()  # whole references -> hashed references


class Hmac256:
    """HMAC-SHA256 with the key's inner and outer states computed once (copying a prepared state
    is about twice as fast as `hmac.new` per value), and bounded per-thread caches. One per engine
    (`Shared`), for every cryptoHash rule."""

    def __init__(self, key: str) -> None:
        raw = key.encode("utf-8")
        if len(raw) > 64:
            raw = hashlib.sha256(raw).digest()
        raw = raw.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in raw))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in raw))
        self.recent = _Recent()

    @staticmethod
    def for_parameters(parameters: Parameters) -> Hmac256:
        return Hmac256(parameters.key("cryptoHashKey"))

    def hex(self, text: str) -> str:
        if not text:
            return ""
        cache = self.recent.values
        found = cache.get(text)
        if found is None:
            found = cache.older.get(text) or self._digest(text)
            cache.keep(text, found)
        return found

    def _digest(self, text: str) -> str:
        inner = self._inner.copy()
        inner.update(text.encode("utf-8"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


class RecentCache(dict):
    """A bounded cache that keeps what is used: when full, its entries become the older
    generation (`older`), which answers, and is handed back to the new one, until the next turn.
    Clearing everything instead lost the ids that every resource of a patient or encounter refers
    to, among the one-off ids of the resources themselves."""

    __slots__ = ("older",)

    def __init__(self) -> None:
        super().__init__()
        self.older: dict[str, str] = {}

    def keep(self, key: str, value: str) -> None:
        """Store a value found missing (or only in the older generation)."""
        if len(self) >= _CACHE_LIMIT:
            self.older = dict(self)
            self.clear()
        self[key] = value


_TYPES = "|".join(sorted(RESOURCE_TYPES))
_ID_PATTERN = r"[A-Za-z0-9\-.]{1,64}"
_LITERAL_REFERENCE = re.compile(
    r"(?P<prefix>((http|https)://[A-Za-z0-9\/.:%$]*)?(" + _TYPES + r")/)"
    rf"(?P<id>{_ID_PATTERN})(?P<suffix>/_history/{_ID_PATTERN})?",
    re.ASCII,
)
_ID = re.compile(_ID_PATTERN, re.ASCII)  # the id of a plain `Type/id`
_OID = re.compile(r"urn:oid:(?P<id>[0-2](\.(0|[1-9][0-9]*))+)", re.ASCII)
_UUID = re.compile(
    r"urn:uuid:(?P<id>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})",
    re.ASCII,
)


def transform_reference(reference: str, transform: Callable[[str], str]) -> str:
    """Apply `transform` to the id part of a reference, as the reference engine finds it."""
    if reference.startswith("#"):
        return "#" + transform(reference[1:]) if len(reference) > 1 else reference
    # `Type/id`, the usual form, without the pattern's alternation over every resource type.
    resource_type, slash, resource_id = reference.partition("/")
    if slash and resource_type in RESOURCE_TYPES and _ID.fullmatch(resource_id):
        return f"{resource_type}/{transform(resource_id)}"
    m = _LITERAL_REFERENCE.fullmatch(reference)
    if m is not None:
        return m["prefix"] + transform(m["id"]) + (m["suffix"] or "")
    for pattern, prefix in ((_OID, "urn:oid:"), (_UUID, "urn:uuid:")):
        m = pattern.fullmatch(reference)
        if m is not None:
            return prefix + transform(m["id"])
    return transform(reference)


class CryptoHashMethod(Method):
    name = "cryptoHash"

    def __init__(
        self, rule: Mapping[str, Any], parameters: Parameters, rule_index: int, shared: Shared
    ) -> None:
        super().__init__(rule, parameters, rule_index, shared)
        self.hasher = shared.get(Hmac256.for_parameters)

    @classmethod
    def key_needed(cls, parameters: Parameters) -> str | None:
        return "cryptoHashKey"

    def primitive_action(self, element: Element, parent_type: str) -> PrimitiveAction | None:
        hex_of = self.hasher.hex
        if element.name.lower() == "reference" and parent_type == "Reference":
            recent = self.hasher.recent

            def hash_reference(value: str, state: ResourceState) -> str:
                state.ops |= CRYPTOHASH
                references = recent.references
                found = references.get(value)
                if found is None:
                    found = references.older.get(value) or transform_reference(value, hex_of)
                    references.keep(value, found)
                return found

            return core_form(hash_reference, "hash_reference")

        def hash_value(value: object, state: ResourceState) -> str:
            state.ops |= CRYPTOHASH
            return hex_of(value if type(value) is str else value_text(value))

        return core_form(hash_value, "hash")
