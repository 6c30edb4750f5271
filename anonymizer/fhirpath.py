"""FHIRPath for the rules a compiled plan cannot decide: a strict parse (the reference's Firely
compiler rejects what fhirpathpy's lenient parser would accept) and evaluation through fhirpathpy
with the reference's `nodesByType`/`nodesByName` extension functions registered.

Regular expressions from configurations (`matches`, `replaceMatches`) run on the `regex` package
with a time limit per evaluation (REGEX_TIMEOUT_SECONDS): a pattern that backtracks without end
on some value is a ProcessingError there (per `processingErrors`), never a hung run.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import fhirpathpy
import regex
from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.error.ErrorListener import ErrorListener
from antlr4.tree.Tree import ParseTreeWalker
from fhirpathpy.engine import base_invocation_registry, nodes
from fhirpathpy.engine.invocations.navigation import children as fp_children
from fhirpathpy.engine.invocations.strings import ensure_string_singleton
from fhirpathpy.engine.util import get_data
from fhirpathpy.models import models
from fhirpathpy.parser.ASTPathListener import ASTPathListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from anonymizer.errors import ProcessingError

R4_MODEL = models["r4"]
EXTENSION_FUNCTIONS = ("nodesByType", "nodesByName")
REGEX_TIMEOUT_SECONDS = 1.0
_INDEX = re.compile(r"\[\d+\]$")


class RegexTimeout(ProcessingError):
    def __init__(self) -> None:
        super().__init__(
            f"A regular expression of the configuration ran past its {REGEX_TIMEOUT_SECONDS:g} s limit "
            "on a value"
        )


class FhirPathSyntaxError(ValueError):
    pass


class _RaisingListener(ErrorListener):
    def syntaxError(self, recognizer, offendingSymbol, line, column, msg, e):  # noqa: N802, N803
        raise FhirPathSyntaxError(f"column {column}: {msg}")


def strict_parse(text: str) -> dict:
    """Parse like fhirpathpy, but fail on any syntax error, trailing text or unknown function."""
    listener = _RaisingListener()
    lexer = FHIRPathLexer(InputStream(text))
    lexer.removeErrorListeners()
    lexer.addErrorListener(listener)
    tokens = CommonTokenStream(lexer)
    parser = FHIRPathParser(tokens)
    parser.removeErrorListeners()
    parser.addErrorListener(listener)
    tree = parser.expression()
    if tokens.LA(1) != Token.EOF:
        raise FhirPathSyntaxError("unexpected text after the expression")
    ast_listener = ASTPathListener()
    ParseTreeWalker().walk(ast_listener, tree)
    ast = ast_listener.parentStack[0]
    for name in _function_names(ast):
        if name not in base_invocation_registry:
            raise FhirPathSyntaxError(f"unknown function {name}()")
    return ast


def _function_names(node: dict):
    if node.get("type") == "Functn":
        yield node["children"][0]["text"]
    for child in node.get("children", ()):
        yield from _function_names(child)


def _node_name(node: nodes.ResourceNode) -> str:
    prop = node.propName or node.path or ""
    return _INDEX.sub("", prop).rsplit(".", 1)[-1]


def _node_type(node: nodes.ResourceNode) -> str:
    if isinstance(node.data, dict) and "resourceType" in node.data:
        return node.data["resourceType"]
    path = node.path or ""
    if path == "System.String":
        return "string"
    return "BackboneElement" if "." in path else path


def _self_and_descendants(ctx: dict, coll: list) -> list:
    out: list = []
    todo = [nodes.ResourceNode.create_node(n) for n in coll]
    while todo:
        out.extend(todo)
        nested = [n for n in fp_children(ctx, todo) if n.data is not None]
        todo = [n for n in nested if not (isinstance(n.data, dict) and "resourceType" in n.data)]
        out.extend(n for n in nested if n not in todo)  # a nested resource node itself matches
    return out


def _nodes_by_type(ctx: dict, coll: list, type_name: str) -> list:
    return [n for n in _self_and_descendants(ctx, coll) if _node_type(n) == type_name]


def _nodes_by_name(ctx: dict, coll: list, name: str) -> list:
    return [n for n in _self_and_descendants(ctx, coll) if _node_name(n) == name]


base_invocation_registry.setdefault("nodesByType", {"fn": _nodes_by_type, "arity": {1: ["String"]}})
base_invocation_registry.setdefault("nodesByName", {"fn": _nodes_by_name, "arity": {1: ["String"]}})


def compile_nodes(text: str) -> Callable[[dict], list[nodes.ResourceNode]]:
    """Compile once; the function returns the matched nodes with their concrete paths
    (`Patient.name[1].given[0]`) for the plan to map back onto the resource. An evaluation that
    fails (a type error, a regular expression past its time limit) is a ProcessingError."""
    strict_parse(text)
    fn = fhirpathpy.compile(text, model=R4_MODEL, options={"returnRawData": True})

    def evaluate(resource: dict) -> list[nodes.ResourceNode]:
        try:
            found = fn(resource, {})
        except ProcessingError:
            raise
        except Exception:  # its text may quote the resource: not kept
            raise ProcessingError("A rule's FHIRPath expression could not be evaluated") from None
        return [n for n in found if isinstance(n, nodes.ResourceNode) and n.data is not None]

    return evaluate


# -- Firely semantics where fhirpathpy differs (the reference evaluates with Firely) --------------
_NET_GROUP = re.compile(r"\(\?<(?![=!])")
_NET_REFERENCE = re.compile(r"\$(?:\{(\w+)\}|(\d+)|(\$))")


def _dotnet_replacement(replacement: str) -> str:
    replacement = replacement.replace("\\", "\\\\")  # .NET takes backslashes literally
    return _NET_REFERENCE.sub(lambda m: "$" if m[3] else f"\\g<{m[1] or m[2]}>", replacement)


def _replace_matches(ctx: dict, coll: list, pattern: Any, replacement: Any) -> Any:
    """`replaceMatches` with .NET regular expressions: `(?<name>...)`, `${name}`, `$1`."""
    text = ensure_string_singleton(coll)
    if isinstance(pattern, list) or isinstance(replacement, list):
        return []
    try:
        return regex.sub(
            _NET_GROUP.sub("(?P<", pattern),
            _dotnet_replacement(replacement),
            text,
            timeout=REGEX_TIMEOUT_SECONDS,
        )
    except TimeoutError:
        raise RegexTimeout from None


def _matches(ctx: dict, coll: list, pattern: Any) -> Any:
    """`matches`, as fhirpathpy does it, on the `regex` package with a time limit."""
    if not pattern or not coll:
        return []
    text = ensure_string_singleton(coll)
    try:
        return regex.search(pattern, text, flags=regex.DOTALL, timeout=REGEX_TIMEOUT_SECONDS) is not None
    except TimeoutError:
        raise RegexTimeout from None


def _no_string_date_comparison(fn: Callable) -> Callable:
    """Firely refuses to order a string against a date or time; fhirpathpy would convert."""

    def compare(ctx: dict, a: list, b: list) -> Any:
        if a and b:
            left, right = get_data(a[0]), get_data(b[0])
            if (isinstance(left, str) and isinstance(right, nodes.FP_TimeBase)) or (
                isinstance(right, str) and isinstance(left, nodes.FP_TimeBase)
            ):
                raise TypeError("a string cannot be compared with a date or time")
        return fn(ctx, a, b)

    return compare


def _to_string(ctx: dict, coll: list) -> Any:
    """`toString()` of a date or time is its text as written (fhirpathpy fills in parts)."""
    if len(coll) != 1:
        return []
    value = get_data(coll[0])
    if isinstance(value, nodes.FP_TimeBase):
        return getattr(value, "asStr")  # noqa: B009 - the text as written (its subclasses have it)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _install_firely_semantics() -> None:
    registry: dict[str, Any] = base_invocation_registry
    if registry.get("replaceMatches", {}).get("fn") is not _replace_matches:
        registry["replaceMatches"] = {**registry["replaceMatches"], "fn": _replace_matches}
        registry["matches"] = {**registry["matches"], "fn": _matches}
        registry["toString"] = {**registry["toString"], "fn": _to_string}
        for op in ("<", ">", "<=", ">="):
            registry[op] = {**registry[op], "fn": _no_string_date_comparison(registry[op]["fn"])}


_install_firely_semantics()


def fhirpath_value(value: Any, type_name: str) -> Any:
    """A primitive value as the FHIRPath engine should see it (dates and times typed)."""
    if type_name in ("date", "dateTime", "instant", "time"):
        return nodes.ResourceNode.create_node(
            value, "dateTime" if type_name == "instant" else type_name
        ).convert_data()
    return value


def compile_on_value(text: str) -> Callable[[Any], list]:
    """Compile an expression evaluated with a value as `$this` (generalize cases)."""
    strict_parse(text)
    fn = fhirpathpy.compile(f"select({text})", model=R4_MODEL)
    return lambda value: fn(value, {})
