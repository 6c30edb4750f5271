"""The keys a configuration's rules may need (docs/contract.md section 3), in one place: their
names, their environment variables, how a value is found, and what may be shown of one.

A key is found in the caller's `keys` argument, else its environment variable, else the
configuration's `parameters`; a rule that needs a key that is empty is a configuration error unless
random keys are allowed for the run. Nothing but a fingerprint (the first 16 hex digits of
HMAC-SHA256(key, "fhir-anonymize key fingerprint")) and the key's source ever leaves this process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

# Each key, with the environment variable that sets it.
VARIABLES = {
    "cryptoHashKey": "ANONYMIZER_CRYPTO_HASH_KEY",
    "dateShiftKey": "ANONYMIZER_DATE_SHIFT_KEY",
    "encryptKey": "ANONYMIZER_ENCRYPT_KEY",
}
NAMES = tuple(VARIABLES)
WEAK_KEY_BYTES = 16
FINGERPRINT_MESSAGE = b"fhir-anonymize key fingerprint"

ARGUMENT, ENV, FILE, RANDOM = "argument", "env", "file", "random"


def fingerprint(key: str) -> str:
    return hmac.new(key.encode("utf-8"), FINGERPRINT_MESSAGE, hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown of a key in use."""

    fingerprint: str
    source: str  # argument | env | file | random


def find(name: str, given: Mapping[str, str], environ: Mapping[str, str], in_file: str) -> tuple[str, str]:
    """(value, source) of a key: the argument, else the environment, else the file; ("", "") when
    all are empty."""
    for value, source in ((given.get(name) or "", ARGUMENT), (environ.get(VARIABLES[name], ""), ENV)):
        if value:
            return value, source
    return (in_file, FILE) if in_file else ("", "")


def random_key() -> str:
    """A throw-away key (`--allow-random-keys`): outputs made with it cannot be linked later."""
    return secrets.token_hex(16)


def missing_key_message(name: str) -> str:
    return (
        f"The parameter {name} is empty but a rule needs it: set {VARIABLES[name]} "
        f"(or '{name}' in the configuration's parameters), or pass --allow-random-keys "
        "for a throw-away run."
    )


def is_weak(value: str) -> bool:
    return len(value.encode("utf-8")) < WEAK_KEY_BYTES
