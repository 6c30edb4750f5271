"""`fhir-anonymize verify SOURCE DEST`: the pre/post comparison a data owner runs before a release.

- Counts per resource type in and out, and per type and element path how many resources carry the
  element before and after, and what happened to its values: removed, transformed (no output value
  is a source value of that element), kept, or partly kept. Values are compared through bottom-k
  sketches of their hashes (`ValueSketch`): a fixed number per element, whatever the input's size.
- A residual-PHI scan: identifying values of the subjects (Patient, RelatedPerson, Person) in the
  source — names, telecom values, address lines, cities, full postal codes, identifier values, full
  birth dates — and the ids of every source resource, looked for in every output string. A match is
  reported with file, line, element path and the value masked (`<kind>:<first 8 hex of SHA-256>`);
  matches inside Organization, Practitioner and Location (which configurations keep on purpose) are
  reported apart as non-subject. Resource ids go into a Bloom filter of fixed size; what it flags is
  confirmed by a second read of the source's ids, so no false match is reported.
- Re-identification risk over Patients' quasi-identifiers (birth year, gender, 3-digit zip, state):
  the size of every equivalence class, the smallest (k), the patients in classes below the
  threshold, and which combinations of quasi-identifiers already make classes that small.
- Arguments that do not correspond (swapped, or an unrelated pair) are refused (`mismatch`).

Memory does not grow with the files: it holds the subjects' identifying values, a fixed-size filter
of ids, a sketch per element path, the quasi-identifier classes, and the first findings of each kind.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anonymizer.labels import LABELS
from anonymizer.lines import Document, counted, documents, file_chunks

SUBJECT_TYPES = ("Patient", "RelatedPerson", "Person")
NON_SUBJECT_TYPES = ("Organization", "Practitioner", "Location", "PractitionerRole")
DEFAULT_K = 5
MIN_LENGTH = 3
LISTED_PER_KIND = 1000  # findings kept for the report per kind; all are counted
MAX_ID_CANDIDATES = 100_000  # distinct output strings the id filter flagged, confirmed later
QUASI_IDENTIFIERS = ("birth year", "gender", "3-digit zip", "state")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_IDENTIFIER_VALUE = re.compile(r"\.identifier(\[\d+\])?\.value$")
_REFERENCE_ID = re.compile(r"^(?:[A-Za-z]+://[^ ]*?/)?([A-Z][A-Za-z]+)/([^/]+)(?:/_history/[^/]+)?$")
# Ids have this form (R4 `id`); the engine faults any other, so only such strings can be leaked ids.
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_ELEMENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_LABEL_CODES = frozenset(label["code"] for _, label in LABELS)
# The elements the scan draws subjects' values from, and ids and references: what "identifying"
# means for sorting the element table (kept identifying elements first).
IDENTIFYING_ELEMENTS = frozenset(
    {"name", "telecom", "address", "identifier", "birthDate", "id", "reference", "photo"}
)

Progress = Callable[[int], None]


def mask(kind: str, value: str) -> str:
    return f"{kind}:{hashlib.sha256(value.encode('utf-8')).hexdigest()[:8]}"


# -- where resources come from ----------------------------------------------------------------------
@dataclass
class Location:
    """A source or destination: its resources (re-readable: the scan reads the source twice), its
    size for progress, and the run identity recorded with it (destination blob metadata)."""

    name: str
    read: Callable[[Progress | None], Iterator[Document]]
    size: int
    identity: dict[str, str] = field(default_factory=dict)


def folder_location(folder: Path) -> Location:
    files = sorted(folder.rglob("*.ndjson")) + sorted(folder.rglob("*.json"))
    return Location(
        str(folder), lambda progress: read_folder(folder, progress), sum(p.stat().st_size for p in files)
    )


def read_folder(folder: Path, progress: Progress | None = None) -> Iterator[Document]:
    """Every NDJSON line and JSON file below `folder`, as the engine reads them (lines.py)."""
    for path in sorted(folder.rglob("*.ndjson")):
        yield from documents(counted(file_chunks(path), progress), str(path.relative_to(folder)))
    for path in sorted(folder.rglob("*.json")):
        raw = path.read_bytes()
        if progress is not None:
            progress(len(raw))
        data = raw.removeprefix(b"\xef\xbb\xbf").strip()
        for _, _, document in documents([data], "-"):
            yield str(path.relative_to(folder)), 1, document


def identity_from_summary(summary: dict) -> dict[str, str]:
    """The run identity in a run summary (docs/contract.md section 6: `fhir-anonymize --summary`)."""
    config: dict = summary.get("config") or {}
    keys: dict = config.get("keys") or {} if type(config) is dict else {}
    if type(config) is not dict or type(keys) is not dict:
        raise ValueError("the summary's config is not an object")
    fingerprints = ", ".join(
        f"{name} {entry.get('fingerprint')} ({entry.get('source')})"
        for name, entry in sorted(keys.items())
        if type(entry) is dict
    )
    engine = summary.get("engine")
    version = str(summary.get("engine_version") or "")
    return {
        "config_digest": str(config.get("digest") or ""),
        "key_fingerprints": fingerprints,
        "engine_version": f"{version} ({engine})" if version and engine else version,
        "reference_date": str(summary.get("reference_date") or ""),
    }


# -- walking a resource -------------------------------------------------------------------------------
def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(element path with indexes, primitive value) for every primitive below."""
    if type(value) is dict:
        for key, child in value.items():
            yield from _walk(child, f"{path}.{key}")
    elif type(value) is list:
        for index, child in enumerate(value):
            yield from _walk(child, f"{path}[{index}]")
    else:
        yield path, value


def _element_values(resource: dict) -> tuple[set[str], dict[str, list[Any]]]:
    """Dotted element paths present (no indexes, shadows folded into their element, names that
    are not FHIR element names folded into `(other)`: keys are never shown as they are), and the
    primitive values per path."""
    found: set[str] = set()
    values: dict[str, list[Any]] = defaultdict(list)

    def visit(value: Any, path: str) -> None:
        if type(value) is dict:
            for key, child in value.items():
                name = _shown_names.get(key)
                if name is None:
                    name = _shown_name(key)
                child_path = f"{path}.{name}" if path else name
                found.add(child_path)
                visit(child, child_path)
        elif type(value) is list:
            for child in value:
                visit(child, path)
        elif path:
            values[path].append(value)

    visit({key: value for key, value in resource.items() if key != "resourceType"}, "")
    return found, values


_shown_names: dict[str, str] = {}


def _shown_name(key: str) -> str:
    """An element's name as the report shows it: shadows (`_name`) folded into the element, keys
    that are not element names as `(other)` (a key is never shown as it is)."""
    name = key[1:] if key.startswith("_") else key
    if not _ELEMENT_NAME.fullmatch(name):
        name = "(other)"
    if len(_shown_names) < 10_000:
        _shown_names[key] = name
    return name


def _labelled(resource: dict) -> bool:
    meta = resource.get("meta")
    security = meta.get("security") if type(meta) is dict else None
    return type(security) is list and any(
        type(label) is dict and label.get("code") in _LABEL_CODES for label in security
    )


# -- comparing values without keeping them ------------------------------------------------------------
def _value_hash(value: Any) -> int:
    return hash(value) if type(value) is str else hash(repr(value))


class ValueSketch:
    """The `size` smallest hashes of an element's distinct source values (a bottom-k sketch).
    An output value whose hash is at most the largest kept is a source value exactly when its
    hash is kept: the share of such output values estimates the share of output values kept."""

    __slots__ = ("heap", "kept", "size")

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.heap: list[int] = []  # negated: the largest kept hash on top
        self.kept: set[int] = set()

    def add(self, value: Any) -> None:
        h = _value_hash(value)
        if h in self.kept:
            return
        if len(self.heap) < self.size:
            heapq.heappush(self.heap, -h)
            self.kept.add(h)
        elif h < -self.heap[0]:
            self.kept.discard(-heapq.heapreplace(self.heap, -h))
            self.kept.add(h)

    def covers(self, value: Any) -> bool | None:
        """Whether an output value is a source value; None when the sketch cannot tell (its hash
        is above the largest kept)."""
        h = _value_hash(value)
        if len(self.heap) == self.size and h > -self.heap[0]:
            return None
        return h in self.kept


class BloomFilter:
    """A fixed-size set of strings that may answer "yes" wrongly (about 1 in 4,000 lookups with
    ten million entries), never "no" wrongly."""

    def __init__(self, bits: int = 1 << 27, probes: int = 7) -> None:
        self.bits = bits
        self.probes = probes
        self.array = bytearray(bits // 8)

    def _positions(self, text: str) -> Iterator[int]:
        # Python's string hash (cached on the string; this run's seed) split in two for double
        # hashing: what it flags is confirmed anyway, so its quality only sets the rework.
        h = hash(text) & 0xFFFFFFFFFFFFFFFF
        first, second = h & 0xFFFFFFFF, (h >> 32) | 1
        for i in range(self.probes):
            yield (first + i * second) % self.bits

    def add(self, text: str) -> None:
        for position in self._positions(text):
            self.array[position >> 3] |= 1 << (position & 7)

    def __contains__(self, text: str) -> bool:
        array = self.array
        return all(array[p >> 3] & (1 << (p & 7)) for p in self._positions(text))


# -- the subjects' identifying values ----------------------------------------------------------------
@dataclass
class SubjectValues:
    words: dict[str, str] = field(default_factory=dict)  # lower-cased word -> kind (name, city)
    whole: dict[str, str] = field(default_factory=dict)  # exact value -> kind
    birth_dates: set[str] = field(default_factory=set)
    ids: BloomFilter = field(default_factory=BloomFilter)

    def add_words(self, text: Any, kind: str) -> None:
        if type(text) is str:
            for word in _WORD.findall(text):
                if len(word) >= MIN_LENGTH:
                    self.words.setdefault(word.lower(), kind)

    def add_whole(self, text: Any, kind: str) -> None:
        if type(text) is str and len(text.strip()) >= MIN_LENGTH:
            self.whole.setdefault(text.strip(), kind)

    def collect(self, resource: dict) -> None:
        resource_id = _resource_id(resource)
        if resource_id is not None:
            self.ids.add(resource_id)
        if resource.get("resourceType") not in SUBJECT_TYPES:
            return
        for name in _list(resource.get("name")):
            for part in ("family", "given", "prefix", "suffix", "text"):
                for text in _list(name.get(part)) if type(name) is dict else ():
                    self.add_words(text, "name")
        for telecom in _list(resource.get("telecom")):
            if type(telecom) is dict:
                self.add_whole(telecom.get("value"), "telecom")
        for address in _list(resource.get("address")):
            if type(address) is dict:
                for line in _list(address.get("line")):
                    self.add_whole(line, "address_line")
                self.add_words(address.get("city"), "city")
                self.add_whole(address.get("postalCode"), "postal_code")
        for identifier in _list(resource.get("identifier")):
            if type(identifier) is dict:
                self.add_whole(identifier.get("value"), "identifier")
        birth = resource.get("birthDate")
        if type(birth) is str and _DATE.fullmatch(birth.strip()):
            self.birth_dates.add(birth.strip())


def _resource_id(resource: dict) -> str | None:
    resource_id = resource.get("id")
    return resource_id if type(resource_id) is str and len(resource_id) >= MIN_LENGTH else None


def _list(value: Any) -> list:
    return value if type(value) is list else [] if value is None else [value]


# -- findings -------------------------------------------------------------------------------------------
@dataclass
class Findings:
    """Matches by kind: every one counted, the first LISTED_PER_KIND kept with file, line, element
    path and the masked value."""

    counts: Counter = field(default_factory=Counter)
    listed: list[dict] = field(default_factory=list)
    _listed_per_kind: Counter = field(default_factory=Counter)

    def add(self, finding: dict) -> None:
        kind = finding["kind"]
        self.counts[kind] += 1
        if self._listed_per_kind[kind] < LISTED_PER_KIND:
            self._listed_per_kind[kind] += 1
            self.listed.append(finding)

    def __len__(self) -> int:
        return sum(self.counts.values())

    def by_kind(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


# -- the report ---------------------------------------------------------------------------------------
@dataclass
class ElementRow:
    resource_type: str
    path: str
    before: int
    after: int
    outcome: str  # removed, transformed, kept, partly kept, added, present (no values of its own)
    kept_share: float | None  # of the output values the sketch could tell

    @property
    def identifying(self) -> bool:
        return any(part in IDENTIFYING_ELEMENTS for part in self.path.split("."))


@dataclass
class Report:
    types_in: Counter = field(default_factory=Counter)
    types_out: Counter = field(default_factory=Counter)
    labelled_in: int = 0
    labelled_out: int = 0
    elements_in: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    elements_out: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    sketches: dict[tuple[str, str], ValueSketch] = field(default_factory=dict)
    # (type, path) -> [output values the sketch could tell, of which source values]
    compared: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    findings: Findings = field(default_factory=Findings)
    non_subject: Findings = field(default_factory=Findings)
    id_candidates_overflow: bool = False
    classes: Counter = field(default_factory=Counter)  # quasi-identifier tuple -> patients
    min_k: int = DEFAULT_K  # 0: report the risk without enforcing it
    source: str = ""
    destination: str = ""
    identity: dict[str, str] = field(default_factory=dict)

    @property
    def leaks(self) -> int:
        return len(self.findings)

    @property
    def threshold(self) -> int:
        return self.min_k or DEFAULT_K

    @property
    def k(self) -> int | None:
        return min(self.classes.values()) if self.classes else None

    @property
    def patients(self) -> int:
        return sum(self.classes.values())

    def below(self, classes: Counter | None = None) -> tuple[int, int]:
        """(classes, patients) below the threshold."""
        small = [n for n in (classes or self.classes).values() if n < self.threshold]
        return len(small), sum(small)

    def passed(self) -> bool:
        k_ok = self.min_k == 0 or self.k is None or self.k >= self.min_k
        return not self.findings and k_ok

    def small_population(self) -> bool:
        """Classes average fewer patients than k: the population is too small for k with these
        quasi-identifiers, whatever the configuration does with other elements."""
        return bool(self.classes) and self.patients / len(self.classes) < self.threshold

    def reasons(self) -> list[str]:
        """The verdict's reasons, each a sentence."""
        out = []
        if self.findings:
            kinds = ", ".join(f"{kind} {n}" for kind, n in self.findings.by_kind().items())
            out.append(
                f"{self.leaks} identifying value(s) of the source's subjects found in the output ({kinds})."
            )
        else:
            out.append("No identifying value of the source's subjects was found in the output.")
        if self.id_candidates_overflow:
            out.append(
                f"More than {MAX_ID_CANDIDATES:,} distinct source ids appear in the output; counting stopped."
            )
        k = self.k
        if k is None:
            out.append(
                "No Patient in the output: no re-identification risk over quasi-identifiers to assess."
            )
        elif self.min_k == 0:
            out.append(f"Smallest quasi-identifier class k = {k} (reported only: --min-k 0).")
        elif k >= self.min_k:
            out.append(f"Every quasi-identifier class holds at least {self.min_k} patients (k = {k}).")
        else:
            groups, patients = self.below()
            out.append(
                f"k = {k}: {patients} of {self.patients} patient(s) sit in {groups} class(es) smaller than "
                f"{self.min_k}."
            )
            if self.small_population():
                out.append(
                    f"The population is small for k = {self.min_k}: {self.patients} patient(s) fall into "
                    f"{len(self.classes)} classes of {', '.join(QUASI_IDENTIFIERS)}, "
                    f"{self.patients / len(self.classes):.1f} on average. Generalize the quasi-identifiers "
                    "(birth decades, fewer ZIP digits), release a larger population, or pass --min-k 0 to "
                    "report the risk without failing on it."
                )
        return out

    def element_rows(self) -> list[ElementRow]:
        """Every (type, path), sorted: identifying elements whose values stay first, then the rest
        of the identifying elements, then the others; within those by outcome and path."""
        rows = []
        for resource_type in sorted(set(self.elements_in) | set(self.elements_out)):
            before: Counter = self.elements_in.get(resource_type, Counter())
            after: Counter = self.elements_out.get(resource_type, Counter())
            for path in sorted(set(before) | set(after)):
                rows.append(self._row(resource_type, path, before.get(path, 0), after.get(path, 0)))
        order = {"kept": 0, "partly kept": 1, "transformed": 2, "added": 3, "present": 4, "removed": 5}

        def key(row: ElementRow) -> tuple:
            stays = row.outcome in ("kept", "partly kept")
            return (
                not (row.identifying and stays),
                not row.identifying,
                order[row.outcome],
                row.resource_type,
                row.path,
            )

        return sorted(rows, key=key)

    def _row(self, resource_type: str, path: str, before: int, after: int) -> ElementRow:
        if after == 0:
            return ElementRow(resource_type, path, before, after, "removed", None)
        if before == 0:
            return ElementRow(resource_type, path, before, after, "added", None)
        told, kept = self.compared.get((resource_type, path), (0, 0))
        if not told:
            return ElementRow(resource_type, path, before, after, "present", None)
        share = kept / told
        outcome = "kept" if share >= 0.95 else "transformed" if share <= 0.05 else "partly kept"
        return ElementRow(resource_type, path, before, after, outcome, share)

    def risk_drivers(self) -> list[dict]:
        """For every combination of the quasi-identifiers: its classes, smallest class and patients
        below the threshold; fewest quasi-identifiers first, then most patients below."""
        rows = []
        for size in range(1, len(QUASI_IDENTIFIERS) + 1):
            for combination in itertools.combinations(range(len(QUASI_IDENTIFIERS)), size):
                merged: Counter = Counter()
                for values, n in self.classes.items():
                    merged[tuple(values[i] for i in combination)] += n
                groups, patients = self.below(merged)
                rows.append(
                    {
                        "quasi_identifiers": [QUASI_IDENTIFIERS[i] for i in combination],
                        "classes": len(merged),
                        "k": min(merged.values()) if merged else None,
                        "classes_below": groups,
                        "patients_below": patients,
                    }
                )
        return sorted(rows, key=lambda r: (len(r["quasi_identifiers"]), -r["patients_below"]))

    def class_sizes(self) -> dict[int, int]:
        """Class size -> patients in classes of that size."""
        sizes: Counter = Counter()
        for n in self.classes.values():
            sizes[n] += n
        return dict(sorted(sizes.items()))

    def to_dict(self) -> dict:
        paths: dict[str, dict[str, list]] = defaultdict(dict)
        for row in self.element_rows():
            paths[row.resource_type][row.path] = [row.before, row.after, row.outcome]
        groups, patients = self.below()
        return {
            "passed": self.passed(),
            "reasons": self.reasons(),
            "source": self.source,
            "destination": self.destination,
            "identity": self.identity,
            "resources": {
                t: [self.types_in.get(t, 0), self.types_out.get(t, 0)]
                for t in sorted(set(self.types_in) | set(self.types_out))
            },
            "labelled": [self.labelled_in, self.labelled_out],
            "elements": {t: dict(sorted(p.items())) for t, p in sorted(paths.items())},
            "leaks": self.leaks,
            "findings_by_kind": self.findings.by_kind(),
            "findings": self.findings.listed,
            "non_subject": {
                "count": len(self.non_subject),
                "by_kind": self.non_subject.by_kind(),
                "first": self.non_subject.listed[:20],
            },
            "risk": {
                "quasi_identifiers": list(QUASI_IDENTIFIERS),
                "patients": self.patients,
                "classes": len(self.classes),
                "k": self.k,
                "threshold": self.threshold,
                "min_k": self.min_k,
                "groups_below_threshold": groups,
                "patients_below_threshold": patients,
                "class_sizes": {str(size): n for size, n in self.class_sizes().items()},
                "small_population": self.small_population(),
                "drivers": self.risk_drivers(),
            },
        }


def mismatch(report: Report) -> str | None:
    """Why the pair does not correspond (swapped or unrelated arguments), or None."""
    if report.labelled_in > report.labelled_out:
        return (
            f"the source carries de-identification security labels on {report.labelled_in} resource(s) and "
            f"the destination on {report.labelled_out}: are the arguments swapped? Give the original export "
            "first: verify SOURCE DEST"
        )
    more = [t for t, n in report.types_out.items() if n > report.types_in.get(t, 0)]
    if more:
        t = sorted(more)[0]
        return (
            f"the destination holds more {t} resources ({report.types_out[t]}) than the source "
            f"({report.types_in.get(t, 0)}), and de-identification never adds resources: is the destination "
            "the output of this source (or are the arguments swapped)?"
        )
    if report.types_in and not report.types_out:
        return "the destination holds no resources: nothing to verify (is it the right folder or container?)"
    return None


def verify(
    source: Iterable[Document] | Location,
    destination: Iterable[Document] | Location,
    *,
    min_k: int = DEFAULT_K,
    progress: Progress | None = None,
    id_filter: BloomFilter | None = None,
) -> Report:
    """`id_filter`: the filter the source's resource ids go into (a smaller one in tests)."""
    source_location = source if isinstance(source, Location) else _once(source)
    destination_location = destination if isinstance(destination, Location) else _once(destination)
    report = Report(
        min_k=min_k,
        source=source_location.name,
        destination=destination_location.name,
        identity=dict(destination_location.identity),
    )
    subjects = SubjectValues() if id_filter is None else SubjectValues(ids=id_filter)
    for _, _, resource in source_location.read(progress):
        resource_type = str(resource.get("resourceType"))
        report.types_in[resource_type] += 1
        report.labelled_in += _labelled(resource)
        present, values = _element_values(resource)
        report.elements_in[resource_type].update(present)
        for path, path_values in values.items():
            sketch = report.sketches.get((resource_type, path))
            if sketch is None:
                sketch = report.sketches[(resource_type, path)] = ValueSketch()
            for value in path_values:
                sketch.add(value)
        subjects.collect(resource)
    pending: list[tuple[str, dict, bool]] = []  # id matches to confirm: (text, finding, non-subject)
    candidates: set[str] = set()
    for file, line, resource in destination_location.read(progress):
        resource_type = str(resource.get("resourceType"))
        report.types_out[resource_type] += 1
        report.labelled_out += _labelled(resource)
        present, values = _element_values(resource)
        report.elements_out[resource_type].update(present)
        for path, path_values in values.items():
            sketch = report.sketches.get((resource_type, path))
            if sketch is not None:
                tally = report.compared[(resource_type, path)]
                for value in path_values:
                    covered = sketch.covers(value)
                    if covered is not None:
                        tally[0] += 1
                        tally[1] += covered
        _scan(resource, resource_type, file, line, subjects, report, pending, candidates)
        if resource_type == "Patient":
            report.classes[_quasi_identifiers(resource)] += 1
    _confirm_ids(source_location, report, pending, candidates)
    return report


def _once(documents_: Iterable[Document]) -> Location:
    """A Location over documents that can be read once more (kept in memory: for small inputs
    and tests; the command line passes Locations)."""
    kept = list(documents_)
    return Location("-", lambda progress: iter(kept), 0)


def _quasi_identifiers(patient: dict) -> tuple:
    birth = patient.get("birthDate")
    year = birth[:4] if type(birth) is str else None
    address = next((a for a in _list(patient.get("address")) if type(a) is dict), {})
    postal = address.get("postalCode")
    return (year, patient.get("gender"), postal[:3] if type(postal) is str else None, address.get("state"))


def _scan(
    resource: dict,
    resource_type: str,
    file: str,
    line: int,
    subjects: SubjectValues,
    report: Report,
    pending: list[tuple[str, dict, bool]],
    candidates: set[str],
) -> None:
    non_subject = resource_type in NON_SUBJECT_TYPES
    target = report.non_subject if non_subject else report.findings
    for path, value in _walk(resource, resource_type):
        if type(value) is not str:
            continue
        text = value.strip()
        kind, id_text = _match(text, path, resource_type, subjects)
        if kind is None:
            continue
        finding = {"file": file, "line": line, "path": path, "kind": kind, "value": mask(kind, text)}
        if id_text is None:
            target.add(finding)
        elif id_text in candidates or len(candidates) < MAX_ID_CANDIDATES:
            candidates.add(id_text)
            pending.append((id_text, finding, non_subject))
        else:
            report.id_candidates_overflow = True
            target.add(finding)


def _match(
    text: str, path: str, resource_type: str, subjects: SubjectValues
) -> tuple[str | None, str | None]:
    """The kind of a match, and for an id match the id to confirm against the source."""
    if len(text) < MIN_LENGTH:
        return None, None
    if text in subjects.birth_dates:
        at_birth_date = resource_type in SUBJECT_TYPES and path.endswith(".birthDate")
        return ("date_not_shifted" if at_birth_date else "birth_date"), None
    kind = subjects.whole.get(text)
    if kind is not None:
        return kind, None
    if _FHIR_ID.fullmatch(text) and text in subjects.ids:  # an identifier holding an id leaks it
        return ("identifier" if _IDENTIFIER_VALUE.search(path) else "resource_id"), text
    if path.endswith(".reference"):
        if text.startswith("urn:uuid:") and _FHIR_ID.fullmatch(text[9:]) and text[9:] in subjects.ids:
            return "reference", text[9:]
        m = _REFERENCE_ID.match(text)
        if m is not None and m[2] in subjects.ids:
            return "reference", m[2]
    for word in _WORD.findall(text):
        kind = subjects.words.get(word.lower())
        if kind is not None:
            return kind, None
    return None, None


def _confirm_ids(
    source: Location, report: Report, pending: list[tuple[str, dict, bool]], candidates: set[str]
) -> None:
    """Keep the id matches whose id a source resource really has (the filter may say yes wrongly),
    in the order found."""
    if not pending:
        return
    real = set()
    for _, _, resource in source.read(None):
        resource_id = _resource_id(resource)
        if resource_id in candidates:
            real.add(resource_id)
    for id_text, finding, non_subject in pending:
        if id_text in real:
            (report.non_subject if non_subject else report.findings).add(finding)
    _order_findings(report.findings)
    _order_findings(report.non_subject)


def _order_findings(findings: Findings) -> None:
    findings.listed.sort(key=lambda f: (f["file"], f["line"], f["path"]))


# -- text output ----------------------------------------------------------------------------------------
def render_text(report: Report) -> str:
    data = report.to_dict()
    lines = ["resources (in -> out):"]
    lines += [f"  {t:28} {a:>8} -> {b:<8}" for t, (a, b) in data["resources"].items()]
    lines.append(
        f"residual PHI: {report.leaks} finding(s)" + (f" {data['findings_by_kind']}" if report.leaks else "")
    )
    for finding in report.findings.listed[:25]:
        lines.append(f"  {finding['file']}:{finding['line']} {finding['path']} {finding['value']}")
    if report.leaks > 25:
        lines.append(f"  ... {report.leaks - 25} more (--json and --html list them)")
    lines.append(
        f"non-subject matches (Organization, Practitioner, Location; kept on purpose): "
        f"{len(report.non_subject)}"
    )
    risk = data["risk"]
    if report.k is not None:
        lines.append(
            f"re-identification risk: smallest class k = {report.k}; {risk['patients_below_threshold']} "
            f"patient(s) in {risk['groups_below_threshold']} class(es) below {report.threshold}"
        )
    lines.append("PASSED" if report.passed() else "FAILED")
    lines += [f"  {reason}" for reason in report.reasons()]
    return "\n".join(lines)
