"""The anonymization methods, one module each, and the one registry of their names.

Adding a method: a module with a `Method` subclass (its `name`, `settings`, `check_rule`, and the
actions), and its line below.
"""

from __future__ import annotations

from anonymizer.methods.base import Method
from anonymizer.methods.cryptohash import CryptoHashMethod
from anonymizer.methods.dateshift import DateShiftMethod
from anonymizer.methods.encrypt import EncryptMethod
from anonymizer.methods.generalize import GeneralizeMethod
from anonymizer.methods.keep import KeepMethod
from anonymizer.methods.perturb import PerturbMethod
from anonymizer.methods.redact import RedactMethod
from anonymizer.methods.substitute import SubstituteMethod

# By lower-case name (the reference matches method names case-insensitively), in the order its
# documentation lists them.
REGISTRY: dict[str, type[Method]] = {
    method.name.lower(): method
    for method in (
        KeepMethod,
        RedactMethod,
        DateShiftMethod,
        CryptoHashMethod,
        EncryptMethod,
        SubstituteMethod,
        PerturbMethod,
        GeneralizeMethod,
    )
}
