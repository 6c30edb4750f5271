"""`fhir-anonymize verify SOURCE DEST`: the pre/post comparison a data owner runs before a release.

- Counts per resource type in and out, and per type and element path how many resources carry the
  element before and after (no record pairing needed).
- A residual-PHI scan: identifying values of the subjects (Patient, RelatedPerson, Person) in the
  source — names, telecom values, address lines, cities, full postal codes, identifier values, full
  birth dates — and the ids of every source resource, looked for in every output string. A match is
  reported with file, line, element path and the value masked (`<kind>:<first 8 hex of SHA-256>`);
  matches inside Organization, Practitioner and Location (which configurations keep on purpose) are
  reported apart as non-subject.
- Re-identification risk over Patients' quasi-identifiers (birth year, gender, 3-digit zip, state):
  the smallest group (k) and how many patients sit in groups smaller than the threshold.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anonymizer.lines import Document, documents, file_chunks

SUBJECT_TYPES = ("Patient", "RelatedPerson", "Person")
NON_SUBJECT_TYPES = ("Organization", "Practitioner", "Location", "PractitionerRole")
DEFAULT_K = 5
MIN_LENGTH = 3
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_IDENTIFIER_VALUE = re.compile(r"\.identifier(\[\d+\])?\.value$")
_REFERENCE_ID = re.compile(r"^(?:[A-Za-z]+://[^ ]*?/)?([A-Z][A-Za-z]+)/([^/]+)(?:/_history/[^/]+)?$")


def mask(kind: str, value: str) -> str:
    return f"{kind}:{hashlib.sha256(value.encode('utf-8')).hexdigest()[:8]}"


# -- reading: readers give (file, line, resource); the command line picks a folder's or a
# container's (anonymizer.azure.verify_source) -------------------------------------------------------
def read_folder(folder: Path) -> Iterator[Document]:
    """Every NDJSON line and JSON file below `folder`, as the engine reads them (lines.py)."""
    for path in sorted(folder.rglob("*.ndjson")):
        yield from documents(file_chunks(path), str(path.relative_to(folder)))
    for path in sorted(folder.rglob("*.json")):
        data = path.read_bytes().removeprefix(b"\xef\xbb\xbf").strip()
        for _, _, document in documents([data], "-"):
            yield str(path.relative_to(folder)), 1, document


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


def _element_paths(resource: dict) -> set[str]:
    """Dotted element names present (no indexes, shadows folded into their element)."""
    found: set[str] = set()

    def visit(value: Any, path: str) -> None:
        if type(value) is dict:
            for key, child in value.items():
                name = key[1:] if key.startswith("_") else key
                child_path = f"{path}.{name}" if path else name
                found.add(child_path)
                visit(child, child_path)
        elif type(value) is list:
            for child in value:
                visit(child, path)

    for key, value in resource.items():
        if key != "resourceType":
            name = key[1:] if key.startswith("_") else key
            found.add(name)
            visit(value, name)
    return found


# -- the subjects' identifying values ----------------------------------------------------------------
@dataclass
class SubjectValues:
    words: dict[str, str] = field(default_factory=dict)  # lower-cased word -> kind (name, city)
    whole: dict[str, str] = field(default_factory=dict)  # exact value -> kind
    birth_dates: set[str] = field(default_factory=set)
    ids: set[str] = field(default_factory=set)

    def add_words(self, text: Any, kind: str) -> None:
        if type(text) is str:
            for word in _WORD.findall(text):
                if len(word) >= MIN_LENGTH:
                    self.words.setdefault(word.lower(), kind)

    def add_whole(self, text: Any, kind: str) -> None:
        if type(text) is str and len(text.strip()) >= MIN_LENGTH:
            self.whole.setdefault(text.strip(), kind)

    def collect(self, resource: dict) -> None:
        resource_id = resource.get("id")
        if type(resource_id) is str and len(resource_id) >= MIN_LENGTH:
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


def _list(value: Any) -> list:
    return value if type(value) is list else [] if value is None else [value]


# -- the report ---------------------------------------------------------------------------------------
@dataclass
class Report:
    types_in: Counter = field(default_factory=Counter)
    types_out: Counter = field(default_factory=Counter)
    elements_in: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    elements_out: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    findings: list[dict] = field(default_factory=list)
    non_subject: list[dict] = field(default_factory=list)
    k: int | None = None
    groups_below: int = 0
    patients_below: int = 0
    threshold: int = DEFAULT_K
    min_k: int | None = None

    @property
    def leaks(self) -> int:
        return len(self.findings)

    def findings_by_kind(self) -> dict[str, int]:
        return dict(sorted(Counter(f["kind"] for f in self.findings).items()))

    def passed(self) -> bool:
        return not self.findings and (self.min_k is None or (self.k or 0) >= self.min_k or self.k is None)

    def to_dict(self) -> dict:
        paths = {}
        for resource_type in sorted(set(self.elements_in) | set(self.elements_out)):
            before: Counter = self.elements_in.get(resource_type, Counter())
            after: Counter = self.elements_out.get(resource_type, Counter())
            paths[resource_type] = {
                p: [before.get(p, 0), after.get(p, 0)] for p in sorted(set(before) | set(after))
            }
        return {
            "passed": self.passed(),
            "resources": {
                t: [self.types_in.get(t, 0), self.types_out.get(t, 0)]
                for t in sorted(set(self.types_in) | set(self.types_out))
            },
            "elements": paths,
            "leaks": self.leaks,
            "findings_by_kind": self.findings_by_kind(),
            "findings": self.findings,
            "non_subject": {
                "count": len(self.non_subject),
                "by_kind": dict(sorted(Counter(f["kind"] for f in self.non_subject).items())),
                "first": self.non_subject[:20],
            },
            "risk": {
                "quasi_identifiers": ["birth year", "gender", "3-digit zip", "state"],
                "k": self.k,
                "threshold": self.threshold,
                "min_k": self.min_k,
                "groups_below_threshold": self.groups_below,
                "patients_below_threshold": self.patients_below,
            },
        }


def verify(
    source: Iterable[Document], destination: Iterable[Document], *, min_k: int | None = None
) -> Report:
    report = Report(threshold=min_k or DEFAULT_K, min_k=min_k)
    subjects = SubjectValues()
    for _, _, resource in source:
        resource_type = str(resource.get("resourceType"))
        report.types_in[resource_type] += 1
        report.elements_in[resource_type].update(_element_paths(resource))
        subjects.collect(resource)
    quasi: Counter = Counter()
    for file, line, resource in destination:
        resource_type = str(resource.get("resourceType"))
        report.types_out[resource_type] += 1
        report.elements_out[resource_type].update(_element_paths(resource))
        _scan(resource, resource_type, file, line, subjects, report)
        if resource_type == "Patient":
            quasi[_quasi_identifiers(resource)] += 1
    if quasi:
        report.k = min(quasi.values())
        small = [n for n in quasi.values() if n < report.threshold]
        report.groups_below, report.patients_below = len(small), sum(small)
    return report


def _quasi_identifiers(patient: dict) -> tuple:
    birth = patient.get("birthDate")
    year = birth[:4] if type(birth) is str else None
    address = next((a for a in _list(patient.get("address")) if type(a) is dict), {})
    postal = address.get("postalCode")
    return (year, patient.get("gender"), postal[:3] if type(postal) is str else None, address.get("state"))


def _scan(
    resource: dict, resource_type: str, file: str, line: int, subjects: SubjectValues, report: Report
) -> None:
    target = report.non_subject if resource_type in NON_SUBJECT_TYPES else report.findings
    for path, value in _walk(resource, resource_type):
        if type(value) is not str:
            continue
        text = value.strip()
        kind = _match(text, path, resource_type, subjects)
        if kind is not None:
            target.append({"file": file, "line": line, "path": path, "kind": kind, "value": mask(kind, text)})


def _match(text: str, path: str, resource_type: str, subjects: SubjectValues) -> str | None:
    if len(text) < MIN_LENGTH:
        return None
    if text in subjects.birth_dates:
        at_birth_date = resource_type in SUBJECT_TYPES and path.endswith(".birthDate")
        return "date_not_shifted" if at_birth_date else "birth_date"
    kind = subjects.whole.get(text)
    if kind is not None:
        return kind
    if text in subjects.ids:  # an identifier holding a resource's id is an identifier leak
        return "identifier" if _IDENTIFIER_VALUE.search(path) else "resource_id"
    if path.endswith(".reference"):
        if text.startswith("urn:uuid:") and text[9:] in subjects.ids:
            return "reference"
        m = _REFERENCE_ID.match(text)
        if m is not None and m[2] in subjects.ids:
            return "reference"
    for word in _WORD.findall(text):
        kind = subjects.words.get(word.lower())
        if kind is not None:
            return kind
    return None


# -- output -------------------------------------------------------------------------------------------
def render_text(report: Report) -> str:
    data = report.to_dict()
    lines = ["resources (in -> out):"]
    lines += [f"  {t:28} {a:>8} -> {b:<8}" for t, (a, b) in data["resources"].items()]
    lines.append(
        f"residual PHI: {report.leaks} finding(s)" + (f" {data['findings_by_kind']}" if report.leaks else "")
    )
    for finding in report.findings[:25]:
        lines.append(f"  {finding['file']}:{finding['line']} {finding['path']} {finding['value']}")
    if report.leaks > 25:
        lines.append(f"  ... {report.leaks - 25} more (--json lists all)")
    lines.append(
        f"non-subject matches (Organization, Practitioner, Location; kept on purpose): "
        f"{len(report.non_subject)}"
    )
    risk = data["risk"]
    if report.k is not None:
        lines.append(
            f"re-identification risk: smallest group k = {report.k}; {risk['patients_below_threshold']} "
            f"patient(s) in {risk['groups_below_threshold']} group(s) below {report.threshold}"
        )
        if report.min_k is None and report.k < report.threshold:
            lines.append(
                f"warning: k = {report.k} is below {report.threshold} (pass --min-k to enforce a minimum)"
            )
    lines.append("PASSED" if report.passed() else "FAILED")
    return "\n".join(lines)


def render_html(report: Report) -> str:
    """A self-contained page (inline SVG charts, no network) with the numbers of `--json`."""
    from html import escape

    data = report.to_dict()

    def bars(rows: Sequence[tuple[str, float, float]], title: str) -> str:
        top = max([max(a, b) for _, a, b in rows] or [1]) or 1
        height = 22 * len(rows) + 30
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="760" height="{height}" role="img" '
            f'aria-label="{escape(title)}">'
        ]
        for i, (label, a, b) in enumerate(rows):
            y = 24 + 22 * i
            parts.append(f'<text x="0" y="{y + 12}" font-size="12">{escape(label)}</text>')
            parts.append(f'<rect x="260" y="{y}" width="{220 * a / top:.1f}" height="8" fill="#888"/>')
            parts.append(f'<rect x="260" y="{y + 9}" width="{220 * b / top:.1f}" height="8" fill="#2a7"/>')
            parts.append(f'<text x="490" y="{y + 12}" font-size="12">{int(a)} / {int(b)}</text>')
        parts.append("</svg>")
        return f"<h2>{escape(title)}</h2>" + "".join(parts)

    resources = [(t, a, b) for t, (a, b) in data["resources"].items()]
    findings = [(k, n, 0) for k, n in data["findings_by_kind"].items()]
    rows = "".join(
        f"<tr><td>{escape(f['file'])}</td><td>{f['line']}</td><td>{escape(f['path'])}</td>"
        f"<td>{escape(f['value'])}</td></tr>"
        for f in report.findings[:500]
    )
    status = "PASSED" if report.passed() else "FAILED"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>fhir-anonymize verify: {status}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:12px}}</style></head>
<body><h1>De-identification check: {status}</h1>
<p>Residual PHI findings: <strong id="leaks">{report.leaks}</strong>.
Non-subject matches: {len(report.non_subject)}. Smallest quasi-identifier group k = {report.k}.</p>
{bars(resources, "Resources per type (grey: source, green: output)")}
{bars(findings, "Findings per kind") if findings else ""}
<h2>Findings</h2><table><tr><th>file</th><th>line</th><th>element</th><th>masked value</th></tr>{rows}</table>
<script type="application/json" id="report">{escape(json.dumps(data))}</script>
</body></html>
"""
