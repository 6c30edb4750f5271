"""The run summary of docs/contract.md section 6: counts only, never content, keys or SAS tokens."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from anonymizer.labels import LABELS
from anonymizer.r4.model import is_resource_type

MAX_FAULT_LINES = 10
_LABEL_CODES = tuple(coding["code"] for _, coding in LABELS)


def _label_codes(meta: Any) -> tuple[str, ...]:
    security = meta.get("security") if type(meta) is dict else None
    if type(security) is not list:
        return ()
    return tuple(
        code for coding in security if type(coding) is dict and (code := coding.get("code")) in _LABEL_CODES
    )


def faults_dict(faults: dict[str, Fault]) -> dict[str, dict]:
    """Faults as docs/contract.md section 6 writes them: per kind, the count and the first lines."""
    return {
        kind: {
            "count": f.count,
            "first_lines": [{"file": file, "line": line} for file, line in sorted(f.first_lines)],
        }
        for kind, f in sorted(faults.items())
    }


def faults_from_dict(data: Any) -> dict[str, Fault]:
    """The inverse of faults_dict; ValueError on anything else (e.g. malformed metadata)."""
    if not isinstance(data, dict):
        raise ValueError("faults must be an object")
    out: dict[str, Fault] = {}
    for kind, entry in data.items():
        if not isinstance(kind, str) or not isinstance(entry, dict):
            raise ValueError("a fault must be an object")
        count, lines = entry.get("count"), entry.get("first_lines", [])
        if type(count) is not int or count < 0 or not isinstance(lines, list):
            raise ValueError("a fault needs a count and a list of lines")
        first = []
        for where in lines[:MAX_FAULT_LINES]:
            if not (
                isinstance(where, dict)
                and isinstance(where.get("file"), str)
                and type(where.get("line")) is int
            ):
                raise ValueError("a fault line is {file, line}")
            first.append((where["file"], where["line"]))
        out[kind] = Fault(count, first)
    return out


def _merge_fault(mine: Fault, more: Fault) -> None:
    mine.count += more.count
    mine.first_lines.extend(more.first_lines[: MAX_FAULT_LINES - len(mine.first_lines)])


def _add(counts: dict[str, int], more: dict[str, int]) -> None:
    for key, count in more.items():
        counts[key] = counts.get(key, 0) + count


@dataclass
class Fault:
    count: int = 0
    first_lines: list[tuple[str, int]] = field(default_factory=list)  # (file, line)


@dataclass
class Summary:
    lines: int = 0
    blank_lines: int = 0
    input_bytes: int = 0
    input_types: dict[str, int] = field(default_factory=dict)
    output_resources: int = 0
    output_bytes: int = 0
    output_types: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    faults: dict[str, Fault] = field(default_factory=dict)
    dropped: Counter = field(default_factory=Counter)  # minimum necessary: (type, reason) -> n
    # Resources `processingErrors: skip` replaced by the empty resource (written, not left out).
    skipped: Fault = field(default_factory=Fault)
    started: float = field(default_factory=time.perf_counter)
    elapsed: float | None = None
    _last_meta: Any = field(default=None, repr=False, compare=False)
    _last_codes: tuple[str, ...] = field(default=(), repr=False, compare=False)
    _last_uses: int = field(default=0, repr=False, compare=False)  # outputs since, not in labels

    def fault(self, kind: str, line: int, file: str = "-") -> None:
        entry = self.faults.setdefault(kind, Fault())
        entry.count += 1
        if len(entry.first_lines) < MAX_FAULT_LINES:
            entry.first_lines.append((file, line))

    def skip(self, line: int, file: str = "-") -> None:
        self.skipped.count += 1
        if len(self.skipped.first_lines) < MAX_FAULT_LINES:
            self.skipped.first_lines.append((file, line))

    def shift_lines(self, lines_before: int) -> None:
        """Line numbers of a part that starts after `lines_before` lines of its file."""
        for fault in (*self.faults.values(), self.skipped):
            fault.first_lines = [(file, line + lines_before) for file, line in fault.first_lines]

    def first_fault(self) -> tuple[str, str, int] | None:
        """(kind, file, line) of the first fault recorded, for a one-line hint."""
        found = [(where, kind) for kind, fault in self.faults.items() for where in fault.first_lines[:1]]
        if not found:
            return None
        (file, line), kind = min(found)
        return kind, file, line

    @property
    def faulted_lines(self) -> int:
        return sum(f.count for f in self.faults.values())

    # Called per line: plain dicts (a Counter's `+=` costs twice as much).
    def count_input(self, resource_type: Any) -> None:
        if not is_resource_type(resource_type):
            resource_type = "<unknown>"
        types = self.input_types
        types[resource_type] = types.get(resource_type, 0) + 1

    def count_output(self, resource: dict, size: int) -> None:
        self.output_resources += 1
        self.output_bytes += size
        resource_type = resource.get("resourceType", "<unknown>")
        types = self.output_types
        types[resource_type] = types.get(resource_type, 0) + 1
        meta = resource.get("meta")
        if meta is not self._last_meta:
            # Outputs of one stream share their labelled metas (labels.py): the codes of the
            # last meta seen are kept with it (held, so `is` cannot meet a recycled object), and
            # counted once per run of outputs sharing it.
            self._count_labels()
            self._last_meta, self._last_codes = meta, _label_codes(meta)
        self._last_uses += 1

    def count_block(self, counts: dict[str, Any], output_bytes: int) -> None:
        """The counts of the lines the compiled core wrote (core.py), in one go."""
        self.blank_lines += counts["blank_lines"]
        _add(self.input_types, counts["input_types"])
        _add(self.output_types, counts["output_types"])
        _add(self.labels, counts["labels"])
        self.output_resources += counts["output_resources"]
        self.output_bytes += output_bytes

    def _count_labels(self) -> None:
        if self._last_uses:
            labels = self.labels
            for code in self._last_codes:
                labels[code] = labels.get(code, 0) + self._last_uses
            self._last_uses = 0

    def merge(self, other: Summary) -> None:
        self._count_labels()
        other._count_labels()
        self.lines += other.lines
        self.blank_lines += other.blank_lines
        self.input_bytes += other.input_bytes
        _add(self.input_types, other.input_types)
        self.output_resources += other.output_resources
        self.output_bytes += other.output_bytes
        _add(self.output_types, other.output_types)
        _add(self.labels, other.labels)
        self.dropped.update(other.dropped)
        for kind, fault in other.faults.items():
            _merge_fault(self.faults.setdefault(kind, Fault()), fault)
        _merge_fault(self.skipped, other.skipped)

    def finish(self) -> None:
        self._count_labels()
        if self.elapsed is None:
            self.elapsed = time.perf_counter() - self.started

    def to_dict(self, *, status: str, engine: Any) -> dict:
        self.finish()
        config = engine.config
        out = {
            "status": status,
            "engine_version": engine.version,
            "engine": engine.kind,
            "reference_date": engine.reference_date.isoformat(),
            "config": {
                "digest": config.digest,
                "keys": {
                    name: {"fingerprint": info.fingerprint, "source": info.source}
                    for name, info in sorted(config.keys.items())
                },
            },
            "input": {
                "lines": self.lines,
                "blank_lines": self.blank_lines,
                "bytes": self.input_bytes,
                "resources_by_type": dict(sorted(self.input_types.items())),
            },
            "output": {
                "resources": self.output_resources,
                "bytes": self.output_bytes,
                "resources_by_type": dict(sorted(self.output_types.items())),
            },
            "labels": dict(sorted(self.labels.items())),
            "faults": faults_dict(self.faults),
            "elapsed_seconds": round(self.elapsed or 0.0, 3),
        }
        if config.random_keys:
            out["config"]["random_keys"] = True
        if self.skipped.count:
            out["skipped"] = faults_dict({"processing_error": self.skipped})
        if self.dropped:
            dropped: dict[str, dict[str, int]] = {}
            for (resource_type, reason), count in sorted(self.dropped.items()):
                dropped.setdefault(resource_type, {})[reason] = count
            out["dropped"] = dropped
        return out
