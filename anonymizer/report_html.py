"""The verification report as one self-contained HTML page (`fhir-anonymize verify --html`): read
top to bottom by a privacy officer, printable, with inline SVG charts, no script to run and nothing
loaded from the network. It holds counts, element paths and masked digests (verify.mask), never a
source value."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from html import escape

from anonymizer.engine import ENGINE_VERSION
from anonymizer.verify import QUASI_IDENTIFIERS, ElementRow, Findings, Report

_OUTCOME_COLOURS = {
    "kept": "#2e7d32",
    "partly kept": "#ef6c00",
    "transformed": "#1565c0",
    "added": "#6a1b9a",
    "present": "#9e9e9e",
    "removed": "#c62828",
}
_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1100px;
color:#212121;line-height:1.4}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #e0e0e0;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;
text-align:left;vertical-align:top} th{background:#f5f5f5}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.verdict{padding:1em 1.5em;border-radius:6px;margin:1em 0;border:3px solid}
.passed{background:#e8f5e9;border-color:#2e7d32;color:#1b5e20}
.failed{background:#ffebee;border-color:#c62828;color:#b71c1c}
.verdict strong{font-size:2em;letter-spacing:.05em}
.tag{display:inline-block;padding:0 6px;border-radius:3px;color:#fff;font-size:12px}
.note{color:#555;font-size:13px} .id{background:#fff3e0}
@media print{body{margin:0;max-width:none} h2{break-after:avoid} table,svg{break-inside:avoid}}
"""


def render_html(report: Report) -> str:
    data = report.to_dict()
    passed = report.passed()
    status = "PASSED" if passed else "FAILED"
    sections = [
        _verdict(report, status, passed),
        _identity(report),
        _resources(report),
        _elements(report),
        _findings(report.findings, "Findings: identifying values of the subjects in the output", "findings"),
        _findings(
            report.non_subject,
            "Non-subject matches (Organization, Practitioner, Location: kept on purpose by most profiles)",
            "non-subject",
        ),
        _risk(report),
    ]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>fhir-anonymize verify: {status}</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>{_STYLE}</style></head>
<body>
<h1>De-identification check</h1>
{"".join(sections)}
<p class="note">The numbers above as JSON, for tools (the same as <code>verify --json</code>):</p>
<script type="application/json" id="report">{escape(json.dumps(data))}</script>
</body></html>
"""


# -- sections -------------------------------------------------------------------------------------------
def _verdict(report: Report, status: str, passed: bool) -> str:
    reasons = "".join(f"<li>{escape(reason)}</li>" for reason in report.reasons())
    kind = "passed" if passed else "failed"
    return (
        f'<div class="verdict {kind}" id="verdict"><strong>{status}</strong>'
        f"<ul>{reasons}</ul></div>"
        f'<p>Residual PHI findings: <strong id="leaks">{report.leaks}</strong>; non-subject matches: '
        f"{len(report.non_subject)}; smallest quasi-identifier class k = {report.k}.</p>"
    )


def _identity(report: Report) -> str:
    identity = report.identity
    rows = [
        ("source", report.source),
        ("destination", report.destination),
        ("configuration digest", identity.get("config_digest")),
        ("key fingerprints", identity.get("key_fingerprints")),
        ("engine version of the run", identity.get("engine_version")),
        ("reference date of the run", identity.get("reference_date")),
        ("verified by", f"fhir-anonymize {ENGINE_VERSION}"),
        ("verified at", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
    ]
    body = "".join(
        f"<tr><th>{escape(name)}</th><td>{escape(value) if value else '<em>not recorded</em>'}</td></tr>"
        for name, value in rows
    )
    note = (
        ""
        if identity
        else '<p class="note">The run identity is read from the destination blobs\' metadata, or from the '
        "run summary given with <code>--summary FILE</code>.</p>"
    )
    return f'<h2>The run</h2><table id="identity">{body}</table>{note}'


def _resources(report: Report) -> str:
    types = sorted(set(report.types_in) | set(report.types_out))
    rows = [(t, report.types_in.get(t, 0), report.types_out.get(t, 0)) for t in types]
    table = "".join(
        f'<tr><td>{escape(t)}</td><td class="n">{a}</td><td class="n">{b}</td><td class="n">{a - b}</td></tr>'
        for t, a, b in rows
    )
    return (
        "<h2>Resources per type</h2>"
        + _paired_bars(rows, "Resources per type: source (grey) and output (green)")
        + '<table id="resources"><tr><th>type</th><th>source</th><th>output</th><th>left out</th></tr>'
        + f"{table}</table>"
        + f'<p class="note">Resources carrying de-identification security labels: {report.labelled_in} in '
        f"the source, {report.labelled_out} in the output.</p>"
    )


def _elements(report: Report) -> str:
    rows = report.element_rows()
    per_type: dict[str, Counter] = {}
    for row in rows:
        per_type.setdefault(row.resource_type, Counter())[row.outcome] += 1
    legend = " ".join(
        f'<span class="tag" style="background:{colour}">{escape(outcome)}</span>'
        for outcome, colour in _OUTCOME_COLOURS.items()
    )
    table = "".join(_element_row(row) for row in rows)
    return (
        "<h2>Elements: what happened to each</h2>"
        '<p class="note">Per resource type and element path: how many resources carry it in the source and '
        "in the output, and what happened to its values: <em>removed</em>; <em>transformed</em> (no output "
        "value is a source value of that element); <em>kept</em>; <em>partly kept</em>; <em>added</em> "
        "(only in the output, e.g. security labels); <em>present</em> (an element without values of its "
        "own). Values are compared by hashed samples, never shown. Identifying elements whose values stay "
        f"come first, highlighted.</p><p>{legend}</p>"
        + _stacked_bars(per_type, "Element paths per type by outcome")
        + '<table id="elements"><tr><th>type</th><th>element</th><th>in source</th><th>in output</th>'
        f"<th>outcome</th></tr>{table}</table>"
    )


def _element_row(row: ElementRow) -> str:
    colour = _OUTCOME_COLOURS[row.outcome]
    share = (
        f" ({100 * row.kept_share:.0f}% of values)" if row.outcome == "partly kept" and row.kept_share else ""
    )
    highlight = ' class="id"' if row.identifying and row.outcome in ("kept", "partly kept") else ""
    return (
        f"<tr{highlight}><td>{escape(row.resource_type)}</td><td>{escape(row.path)}</td>"
        f'<td class="n">{row.before}</td><td class="n">{row.after}</td>'
        f'<td><span class="tag" style="background:{colour}">{escape(row.outcome)}</span>{share}</td></tr>'
    )


def _findings(findings: Findings, title: str, anchor: str) -> str:
    if not findings:
        return f'<h2>{escape(title)}</h2><p id="{anchor}">None.</p>'
    by_kind = findings.by_kind()
    parts = [f'<h2>{escape(title)}</h2><div id="{anchor}">']
    parts.append(_count_bars([(kind, n) for kind, n in by_kind.items()], f"{title}: per kind", "#c62828"))
    for kind, count in by_kind.items():
        listed = [f for f in findings.listed if f["kind"] == kind]
        rows = "".join(
            f'<tr><td>{escape(f["file"])}</td><td class="n">{f["line"]}</td><td>{escape(f["path"])}</td>'
            f"<td><code>{escape(f['value'])}</code></td></tr>"
            for f in listed
        )
        more = f" (the first {len(listed)} listed)" if len(listed) < count else ""
        parts.append(
            f"<h3>{escape(kind)}: {count}{more}</h3><table><tr><th>file</th><th>line</th><th>element</th>"
            f"<th>masked value</th></tr>{rows}</table>"
        )
    parts.append("</div>")
    return "".join(parts)


def _risk(report: Report) -> str:
    if report.k is None:
        return "<h2>Re-identification risk</h2><p>No Patient in the output.</p>"
    groups, patients = report.below()
    drivers = [d for d in report.risk_drivers() if d["patients_below"]]
    minimal: list[dict] = []
    for row in drivers:  # the smallest combinations that already make classes below k
        chosen = set(row["quasi_identifiers"])
        if not any(set(m["quasi_identifiers"]) <= chosen for m in minimal):
            minimal.append(row)
    driver_rows = "".join(
        f'<tr><td>{escape(" + ".join(d["quasi_identifiers"]))}</td><td class="n">{d["classes"]}</td>'
        f'<td class="n">{d["k"]}</td><td class="n">{d["patients_below"]}</td></tr>'
        for d in minimal
    )
    drivers_html = (
        "<p>The fewest quasi-identifiers that already leave patients in classes smaller than "
        f'{report.threshold}:</p><table id="drivers"><tr><th>quasi-identifiers</th><th>classes</th>'
        f"<th>smallest</th><th>patients below {report.threshold}</th></tr>{driver_rows}</table>"
        if minimal
        else f"<p>No combination of quasi-identifiers leaves a class smaller than {report.threshold}.</p>"
    )
    enforced = "reported only (--min-k 0)" if report.min_k == 0 else f"required k = {report.min_k}"
    return (
        "<h2>Re-identification risk</h2>"
        f"<p>Quasi-identifiers of each output Patient: {escape(', '.join(QUASI_IDENTIFIERS))}. "
        f"{report.patients} patient(s) in {len(report.classes)} equivalence class(es); smallest k = "
        f"{report.k} ({enforced}); {patients} patient(s) in {groups} class(es) smaller than "
        f"{report.threshold}.</p>" + _histogram(report) + drivers_html
    )


# -- charts (inline SVG, labelled with their numbers: readable in print and without colour) -------------
def _svg(width: int, height: int, title: str, body: str, anchor: str = "") -> str:
    ident = f' id="{anchor}"' if anchor else ""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg"{ident} width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
        f"{body}</svg>"
    )


def _paired_bars(rows: list[tuple[str, int, int]], title: str) -> str:
    top = max([max(a, b) for _, a, b in rows] or [1]) or 1
    parts = []
    for i, (label, a, b) in enumerate(rows):
        y = 6 + 24 * i
        parts.append(f'<text x="0" y="{y + 13}" font-size="12">{escape(label)}</text>')
        parts.append(f'<rect x="230" y="{y}" width="{560 * a / top:.1f}" height="9" fill="#9e9e9e"/>')
        parts.append(f'<rect x="230" y="{y + 10}" width="{560 * b / top:.1f}" height="9" fill="#2e7d32"/>')
        parts.append(f'<text x="800" y="{y + 13}" font-size="12">{a} → {b}</text>')
    return _svg(900, 24 * len(rows) + 12, title, "".join(parts), "resources-chart")


def _stacked_bars(per_type: dict[str, Counter], title: str) -> str:
    top = max([sum(c.values()) for c in per_type.values()] or [1]) or 1
    parts = []
    for i, (resource_type, counts) in enumerate(sorted(per_type.items())):
        y = 6 + 22 * i
        parts.append(f'<text x="0" y="{y + 12}" font-size="12">{escape(resource_type)}</text>')
        x = 230.0
        for outcome, colour in _OUTCOME_COLOURS.items():
            n = counts.get(outcome, 0)
            if n:
                width = 460 * n / top
                parts.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="16" fill="{colour}">'
                    f"<title>{escape(outcome)}: {n}</title></rect>"
                )
                x += width
        summary = ", ".join(f"{counts[o]} {o}" for o in _OUTCOME_COLOURS if counts.get(o))
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 12}" font-size="11">{escape(summary)}</text>')
    return _svg(1100, 22 * len(per_type) + 12, title, "".join(parts), "elements-chart")


def _count_bars(rows: list[tuple[str, int]], title: str, colour: str) -> str:
    top = max([n for _, n in rows] or [1]) or 1
    parts = []
    for i, (label, n) in enumerate(rows):
        y = 6 + 22 * i
        parts.append(f'<text x="0" y="{y + 12}" font-size="12">{escape(label)}</text>')
        parts.append(f'<rect x="200" y="{y}" width="{500 * n / top:.1f}" height="16" fill="{colour}"/>')
        parts.append(f'<text x="{206 + 500 * n / top:.1f}" y="{y + 12}" font-size="12">{n}</text>')
    return _svg(800, 22 * len(rows) + 12, title, "".join(parts))


_BUCKETS = ((1, 1), (2, 2), (3, 3), (4, 4), (5, 9), (10, 19), (20, 49), (50, 10**12))


def _histogram(report: Report) -> str:
    """Patients by the size of their equivalence class; bars of classes below the threshold red."""
    sizes = report.class_sizes()
    buckets = []
    for low, high in _BUCKETS:
        patients = sum(n for size, n in sizes.items() if low <= size <= high)
        label = str(low) if low == high else f"{low}+" if high > 10**9 else f"{low}-{high}"
        buckets.append((label, patients, low < report.threshold))
    top = max([p for _, p, _ in buckets] or [1]) or 1
    parts = []
    for i, (label, patients, small) in enumerate(buckets):
        x = 60 + 90 * i
        height = 200 * patients / top
        colour = "#c62828" if small else "#2e7d32"
        parts.append(
            f'<rect x="{x}" y="{230 - height:.1f}" width="70" height="{height:.1f}" fill="{colour}"/>'
        )
        parts.append(
            f'<text x="{x + 35}" y="{225 - height:.1f}" font-size="12" text-anchor="middle">{patients}</text>'
        )
        parts.append(f'<text x="{x + 35}" y="248" font-size="12" text-anchor="middle">{label}</text>')
    parts.append('<line x1="50" y1="230" x2="790" y2="230" stroke="#424242"/>')
    parts.append(
        '<text x="420" y="270" font-size="12" text-anchor="middle">class size (patients sharing '
        "the same quasi-identifiers)</text>"
    )
    parts.append(
        '<text x="14" y="130" font-size="12" transform="rotate(-90 14 130)" text-anchor="middle">'
        "patients</text>"
    )
    title = f"Patients by equivalence class size (red: classes smaller than {report.threshold})"
    return f"<h3>{escape(title)}</h3>" + _svg(800, 280, title, "".join(parts), "histogram")
