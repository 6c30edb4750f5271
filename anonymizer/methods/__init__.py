"""One module per anonymization method; each registers itself by its configuration name."""

from __future__ import annotations

import importlib

MODULES = ("keep", "redact", "dateshift", "cryptohash", "encrypt", "perturb", "generalize", "substitute")


def load_methods() -> None:
    for name in MODULES:
        importlib.import_module(f"anonymizer.methods.{name}")
