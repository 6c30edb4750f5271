"""keep: changes nothing, records nothing, and protects the node's subtree from later rules
(the protection is the plan's "first rule to reach a node wins")."""

from __future__ import annotations

from anonymizer.methods.base import Method


class KeepMethod(Method):
    name = "keep"
