"""FHIRPath for the rules a compiled plan cannot decide: a strict parse (the reference's Firely
compiler rejects what fhirpathpy's lenient parser would accept) and evaluation through fhirpathpy
with the reference's `nodesByType`/`nodesByName` extension functions registered.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import fhirpathpy
from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.error.ErrorListener import ErrorListener
from antlr4.tree.Tree import ParseTreeWalker
from fhirpathpy.engine import base_invocation_registry, nodes
from fhirpathpy.engine.invocations.navigation import children as fp_children
from fhirpathpy.models import models
from fhirpathpy.parser.ASTPathListener import ASTPathListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

R4_MODEL = models["r4"]
EXTENSION_FUNCTIONS = ("nodesByType", "nodesByName")
_INDEX = re.compile(r"\[\d+\]$")


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
    (`Patient.name[1].given[0]`) for the plan to map back onto the resource."""
    strict_parse(text)
    fn = fhirpathpy.compile(text, model=R4_MODEL, options={"returnRawData": True})

    def evaluate(resource: dict) -> list[nodes.ResourceNode]:
        found = fn(resource, {})
        return [n for n in found if isinstance(n, nodes.ResourceNode) and n.data is not None]

    return evaluate


def compile_values(text: str, *, vars_: dict[str, Any] | None = None) -> Callable[..., list]:
    """Compile an expression that yields values (generalize cases)."""
    strict_parse(text)
    return fhirpathpy.compile(text, model=R4_MODEL)
