"""Parsing rule paths into the forms the plan compiler decides statically.

A rule path is split as the reference splits it (docs/reference.md section 3.1) and then classified:
- `resource`: the path is a resource type (`Patient`, `Resource`, `DomainResource`);
- `table`: the reference's fast path, `nodesByType('X')` / `nodesByName('x')` with at most one
  plain child name, matched against the resource's descendants (the root excluded);
- `static`: a chain of element names, `nodesByType`/`nodesByName` functions, `ofType(T)`,
  `as(T)` and `x as T` (with parentheses), decided from element names and types alone;
- `dynamic`: anything else (`where(...)`, indexers, other functions), evaluated with fhirpathpy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPLIT = re.compile(r"^(?P<resource>[A-Z][a-zA-Z]*)?(\.)?(?P<expression>.*?)$", re.DOTALL)
_TABLE = re.compile(
    r"^(?P<function>nodesByType|nodesByName)\(['|\"](?P<arg>[A-Za-z0-9]+)['|\"]\)"
    r"(\.(?P<child>[A-Za-z0-9]+))?$"
)
_FUNCTION = re.compile(
    r"(?P<function>nodesByType|nodesByName)\(\s*(?P<q>['\"])(?P<arg>[A-Za-z0-9]+)(?P=q)\s*\)"
)
_TYPE_FUNCTION = re.compile(r"(ofType|as)\(\s*(?P<arg>[A-Z][A-Za-z0-9]*|[a-z][A-Za-z0-9]*)\s*\)")
_IDENTIFIER = re.compile(r"[a-z][A-Za-z0-9]*")
_AS = re.compile(r"\s+as\s+(?P<arg>[A-Za-z][A-Za-z0-9]*)")

CHILD = "child"
BY_TYPE = "bytype"
BY_NAME = "byname"
IS_TYPE = "type"


@dataclass(frozen=True, slots=True)
class Selector:
    kind: str
    arg: str


@dataclass(frozen=True, slots=True)
class RulePath:
    text: str
    resource_type: str  # '' when the path does not start with a type name
    expression: str  # what the reference evaluates on the resource node
    kind: str  # resource | table | static | dynamic
    selectors: tuple[Selector, ...] = ()


class _NotStatic(Exception):
    pass


def parse_rule_path(text: str) -> RulePath:
    m = _SPLIT.match(text)
    assert m is not None  # the pattern matches every string
    resource_type = m["resource"] or ""
    expression = m["expression"]
    if not expression:
        return RulePath(text, resource_type, text, "resource")
    table = _TABLE.match(text)
    if table is not None:
        kind = BY_TYPE if table["function"] == "nodesByType" else BY_NAME
        selectors = [Selector(kind, table["arg"])]
        if table["child"]:
            selectors.append(Selector(CHILD, table["child"]))
        return RulePath(text, "", text, "table", tuple(selectors))
    try:
        selectors, end = _chain(expression, 0)
        if end != len(expression):
            raise _NotStatic
    except _NotStatic:
        return RulePath(text, resource_type, expression, "dynamic")
    return RulePath(text, resource_type, expression, "static", tuple(selectors))


def _chain(text: str, i: int) -> tuple[list[Selector], int]:
    selectors, i = _atom(text, i)
    while i < len(text) and text[i] == ".":
        step, i = _step(text, i + 1)
        selectors.append(step)
    m = _AS.match(text, i)
    if m is not None:
        selectors.append(Selector(IS_TYPE, m["arg"]))
        i = m.end()
    return selectors, i


def _atom(text: str, i: int) -> tuple[list[Selector], int]:
    if text.startswith("(", i):
        inner, i = _chain(text, i + 1)
        if not text.startswith(")", i):
            raise _NotStatic
        return inner, i + 1
    step, i = _step(text, i)
    return [step], i


def _step(text: str, i: int) -> tuple[Selector, int]:
    m = _FUNCTION.match(text, i)
    if m is not None:
        kind = BY_TYPE if m["function"] == "nodesByType" else BY_NAME
        return Selector(kind, m["arg"]), m.end()
    m = _TYPE_FUNCTION.match(text, i)
    if m is not None:
        return Selector(IS_TYPE, m["arg"]), m.end()
    m = _IDENTIFIER.match(text, i)
    if m is not None and not text.startswith("(", m.end()):
        return Selector(CHILD, m[0]), m.end()
    raise _NotStatic
