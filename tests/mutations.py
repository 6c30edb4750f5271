"""Generated NDJSON for the differential tests of the compiled core: resources of the Synthea
export (or of the package's demo export when ../shared is absent), each changed by up to three
mutations the way real exports and hostile inputs differ from clean ones: keys dropped, added,
duplicated or retyped, values padded with .NET and Python whitespace, non-ASCII and escaped text,
odd numbers (exponents, `-0`, beyond a double, past the digit limit) and dates, `_x` shadows,
contained resources and Bundles, deep nesting, labels already present, bad resource types, and
lines that are pretty-printed, escaped, truncated, not UTF-8 or blank. Deterministic per seed."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from anonymizer import jsonio

REPO = Path(__file__).resolve().parent.parent
SYNTHEA = REPO.parent / "shared" / "data" / "synthea-export"
DEMO = REPO / "anonymizer" / "demo" / "export"

V3 = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
WHITESPACE = [" ", "\t", "\u00a0", "\u2028", "\u0085", "\u1680", "\u3000", "\x1c", "\u200b", "\u205f"]
TEXTS = [
    "é",
    "ß",
    "Ωmega",
    "日本",
    "\U0001d4b3",
    "\u2029",
    "\\",
    '"',
    "\x01",
    "\u00ad",
    "ǅ",
    "İ",
    "MAS\u212aED",
]
NUMBERS = [
    "0", "-0", "-0.0", "1.50", "12.5", "1e2", "1E+2", "1.250e1", "4.5e1", "0.0000001", "1e-7", "1e-400",
    "1E400", "123456789012345678901234567890", "12345678901234567.5", "0.1", "89", "90", "-5", "1e1001",
    "2147483648", "-2147483649", "7", "1.0",
]  # fmt: skip
DATES = [
    "2020", "2020-05", "2020-05-03", "2020-02-29", "2021-02-29", "2020-02-30", "0000-01-01", "0001-01-01",
    "9999-12-31", "1900-01-01", "1936-01-01", "1937-06-15", "2020-01-01T10:00:00Z",
    "2020-01-01T10:00:00.123456789+05:30", "2020-01-01T10:00:00+14:00", "2020-01-01T10:00:00+14:30",
    "2020-01-01T10:00", "2020-01-01T25:00:00Z", "2020-05-03:00", " 2020-01-01 ", "2020-1-1", "",
]  # fmt: skip
REFERENCES = [
    "Patient/abc", "Patient/abc/_history/2", "#local", "#", "urn:uuid:6a1b2c3d-1111-2222-3333-444455556666",
    "urn:oid:1.2.840.10008", "http://example.org/fhir/Patient/1", "https://x.org/Observation/o-1/_history/7",
    "Foo/bar", "Patient/", " Patient/p1 ", "Patient/a b",
]  # fmt: skip


def source_lines() -> list[bytes]:
    folder = SYNTHEA if SYNTHEA.is_dir() else DEMO
    lines = []
    for path in sorted(folder.rglob("*.ndjson")):
        lines += [line for line in path.read_bytes().splitlines() if line.strip()]
    return lines


# -- value-level mutations (on a parsed resource; numbers are orjson Fragments, kept as written) ------
def _places(value: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key or index) below `value`."""
    if type(value) is dict:
        for key, item in value.items():
            out.append((value, key))
            _places(item, out)
    elif type(value) is list:
        for index, item in enumerate(value):
            out.append((value, index))
            _places(item, out)
    return out


def _pick(rng: random.Random, resource: dict, want: Callable[[Any, Any], bool]) -> tuple[Any, Any] | None:
    found = [(c, k) for c, k in _places(resource, []) if want(c, k)]
    return rng.choice(found) if found else None


def drop_key(rng: random.Random, r: dict) -> None:
    place = _pick(rng, r, lambda c, k: type(c) is dict and k != "resourceType")
    if place:
        del place[0][place[1]]


def retype(rng: random.Random, r: dict) -> None:
    place = _pick(rng, r, lambda c, k: k != "resourceType")
    if place:
        container, key = place
        old = container[key]
        palette = ["x", "", "  ", True, False, None, [], {}, [old], "007", "+5", "true"]
        palette.append(orjson.Fragment(b"1.5"))
        container[key] = rng.choice(palette)


def pad_string(rng: random.Random, r: dict) -> None:
    place = _pick(rng, r, lambda c, k: type(c[k]) is str and k != "resourceType")
    if place:
        container, key = place
        container[key] = rng.choice(WHITESPACE) + container[key] + rng.choice(["", *WHITESPACE])


def unicode_text(rng: random.Random, r: dict) -> None:
    place = _pick(rng, r, lambda c, k: type(c[k]) is str and k not in ("resourceType", "reference"))
    if place:
        container, key = place
        text = container[key]
        at = rng.randrange(len(text) + 1)
        container[key] = text[:at] + rng.choice(TEXTS) + text[at:]


def odd_number(rng: random.Random, r: dict) -> None:
    place = _pick(
        rng, r, lambda c, k: type(c[k]) in (int, float, orjson.Fragment) or k in ("value", "valueDecimal")
    )
    if place:
        container, key = place
        text = rng.choice(NUMBERS)
        container[key] = orjson.Fragment(text.encode()) if rng.random() < 0.8 else text


def odd_date(rng: random.Random, r: dict) -> None:
    names = ("Date", "DateTime", "start", "end", "issued", "recorded", "date", "lastUpdated", "authoredOn")
    place = _pick(rng, r, lambda c, k: type(k) is str and k.endswith(names) and type(c[k]) is str)
    if place:
        place[0][place[1]] = rng.choice(DATES)


def odd_reference(rng: random.Random, r: dict) -> None:
    place = _pick(rng, r, lambda c, k: k == "reference")
    if place:
        place[0][place[1]] = rng.choice(REFERENCES)


def deep(rng: random.Random, r: dict) -> None:
    depth = rng.choice([3, 20, 60, 62, 63, 64, 70])
    chain: dict = {"url": "http://x/e", "valueString": "deep"}
    for _ in range(depth):
        chain = {"url": "http://x/e", "extension": [chain]}
    r["extension"] = [chain]


def shadow(rng: random.Random, r: dict) -> None:
    extension = [{"url": "http://x/s", "valueString": rng.choice(["a", " b ", ""])}]
    choice = rng.randrange(5)
    if r.get("resourceType") == "Patient" or choice == 0:
        key = rng.choice(["_birthDate", "_gender", "_id", "_active"])
        value = rng.choice([{"extension": extension}, None, {"id": "s1"}, {}, [{"id": "s2"}]])
        items = list(r.items())
        items.insert(rng.randrange(len(items) + 1), (key, value))
        r.clear()
        r.update(items)
    else:
        place = _pick(rng, r, lambda c, k: type(c) is dict and type(c[k]) is str and k != "resourceType")
        if place:
            container, key = place
            container["_" + str(key)] = rng.choice([{"extension": extension}, None, [None, {"id": "x"}]])
    names = [n for n in r.get("name", []) if type(n) is dict] if type(r.get("name")) is list else []
    if names:
        names[0]["_given"] = [None, {"id": "g"}] if rng.random() < 0.5 else [{"extension": extension}]


def unknown_key(rng: random.Random, r: dict) -> None:
    place = _pick(rng, r, lambda c, k: type(c) is dict) or (r, None)
    target = place[0]
    target[rng.choice(["zzUnknown", "fhir_comments", "_zz", "resourcetype"])] = rng.choice([1, "x", {"a": 1}])


def contained(rng: random.Random, r: dict, others: list[dict]) -> None:
    other = copy.deepcopy(rng.choice(others))
    other.pop("contained", None)
    r["contained"] = [other] + ([copy.deepcopy(rng.choice(others))] if rng.random() < 0.3 else [])


def meta(rng: random.Random, r: dict) -> None:
    codes = ["REDACTED", "redacted", "MASKED", "MAS\u212aED", "CRYTOHASH", "other", None]
    security = [{"system": V3, "code": c} for c in rng.sample(codes, 2) if c is not None]
    m = r.setdefault("meta", {}) if type(r.get("meta")) is dict else {}
    r["meta"] = m
    m["security"] = security
    if rng.random() < 0.5:
        m["lastUpdated"] = rng.choice(
            ["2020-01-01T10:00:00.1234567890Z", "2020-01-01", "2020", "2020-01-01T10:00:00+05:00"]
        )
    if rng.random() < 0.3:
        m["versionId"] = "7"
        m["_source"] = {"extension": [{"url": "http://x/m", "valueString": "m"}]}


def resource_type(rng: random.Random, r: dict) -> None:
    choice = rng.randrange(4)
    if choice == 0:
        r.pop("resourceType", None)
    else:
        r["resourceType"] = ["Foo", 7, None][choice - 1]


VALUE_MUTATIONS: list[Callable[[random.Random, dict], None]] = [
    drop_key, retype, pad_string, pad_string, unicode_text, odd_number, odd_number, odd_date, odd_date,
    odd_reference, deep, shadow, shadow, unknown_key, meta, resource_type,
]  # fmt: skip


# -- text-level mutations (on the line) --------------------------------------------------------------
def _text(rng: random.Random, line: bytes) -> bytes:
    choice = rng.randrange(12)
    if choice == 0:  # pretty-printed, as some servers write
        return json.dumps(json.loads(line), indent=rng.choice([None, 1])).encode().replace(b"\n", b" ")
    if choice == 1:  # non-ASCII escaped
        return json.dumps(json.loads(line), ensure_ascii=True).encode()
    if choice == 2 and line.startswith(b'{"resourceType"'):  # a repeated key: the last value wins
        return b'{"id":"first-id",' + line[1:]
    if choice == 3:  # truncated
        return line[: rng.randrange(1, len(line))]
    if choice == 4:  # not UTF-8 inside a string
        at = line.find(b'":"') + 3
        return line[:at] + b"\xff\xfe" + line[at:] if at > 2 else line + b"\xff"
    if choice == 5:  # a lone surrogate
        at = line.find(b'":"') + 3
        return line[:at] + b"\\ud800" + line[at:] if at > 2 else line
    if choice == 6:
        return line + b"\r"  # CRLF ending
    if choice == 7:
        return line + b" x"  # trailing garbage
    if choice == 8:
        return b"\xef\xbb\xbf" + line  # a BOM not at the start of the file
    if choice == 9:
        return b"[" + line + b"]"  # not an object
    return line


def generate(count: int, seed: int = 17) -> Iterator[bytes]:
    """`count` lines (each with its newline), a few of them blank or whitespace."""
    rng = random.Random(seed)
    lines = source_lines()
    parsed = [jsonio.loads_exact(line) for line in rng.sample(lines, min(len(lines), 400))]
    others = [p for p in parsed if len(orjson.dumps(p, default=jsonio._exact_default)) < 1500] or parsed
    for _ in range(count):
        roll = rng.random()
        if roll < 0.01:
            yield rng.choice([b"\n", b"   \n", b"\t\r\n"])
            continue
        line = rng.choice(lines)
        if roll < 0.30:  # unchanged: most of an export is clean
            yield line + b"\n"
            continue
        resource = jsonio.loads_exact(line)
        if roll < 0.33:  # wrapped in a Bundle
            resource = {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [
                    {"fullUrl": "urn:uuid:1", "resource": resource},
                    {"resource": copy.deepcopy(rng.choice(others))},
                ],
            }
        for _ in range(rng.randint(1, 3)):
            mutation = rng.choice(VALUE_MUTATIONS)
            if rng.random() < 0.1:
                contained(rng, resource, others)
            else:
                mutation(rng, resource)
        text = _dump(resource)
        if rng.random() < 0.25:
            text = _text(rng, text)
        yield text + b"\n"


def _dump(value: Any) -> bytes:
    return orjson.dumps(value, default=_default)


def _default(value: Any) -> Any:
    return jsonio._exact_default(value)
