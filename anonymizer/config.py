"""Loading and validating Microsoft's anonymizer configuration format, unmodified.

Validation follows the reference's order and messages (reference section 1.4); the first failure
raises ConfigurationError. Keys are resolved as CONTRACT section 3 says: the `keys` argument, then
the ANONYMIZER_*_KEY environment variables, then the file; a key that a rule needs and that is
empty is an error unless random keys are allowed explicitly.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from anonymizer import jsonc
from anonymizer.errors import ConfigurationError

log = logging.getLogger("anonymizer.config")

METHODS = ("redact", "dateshift", "cryptohash", "substitute", "encrypt", "perturb", "keep", "generalize")
KEY_PARAMETERS = {
    "cryptoHashKey": "ANONYMIZER_CRYPTO_HASH_KEY",
    "dateShiftKey": "ANONYMIZER_DATE_SHIFT_KEY",
    "encryptKey": "ANONYMIZER_ENCRYPT_KEY",
}
DATE_SHIFT_SCOPES = ("resource", "file", "folder", "patient")
FINGERPRINT_MESSAGE = b"fhir-anonymize key fingerprint"
WEAK_KEY_BYTES = 16
EXTENSION_KEYS = ("minimumNecessary",)  # our namespaced extension (issue: minimum necessary)


def _failed() -> ConfigurationError:
    return ConfigurationError("Failed to parse configuration file")


def key_fingerprint(key: str) -> str:
    return hmac.new(key.encode("utf-8"), FINGERPRINT_MESSAGE, hashlib.sha256).hexdigest()[:16]


@dataclass
class KeyInfo:
    fingerprint: str
    source: str  # argument | env | file | random


@dataclass
class Parameters:
    date_shift_key: str = ""
    date_shift_scope: str = "resource"
    date_shift_fixed_offset: int | None = None
    date_shift_range: int = 50
    crypto_hash_key: str = ""
    encrypt_key: str = ""
    partial_ages: bool = False
    partial_dates: bool = False
    partial_zip_codes: bool = False
    restricted_zip_codes: tuple[str, ...] = ()
    custom_settings: dict | None = None
    reference_date: date = field(default_factory=lambda: datetime.now(UTC).date())

    @cached_property
    def _hasher(self):
        from anonymizer.methods.cryptohash import Hmac256

        return Hmac256(self.crypto_hash_key)

    def hasher(self):
        """One HMAC (with its cache) per engine, shared by every cryptoHash rule."""
        return self._hasher

    @cached_property
    def date_shift_offsets(self):
        """One offset table (with its cache) per engine, shared by every dateShift rule."""
        from anonymizer.methods.dateshift import DateShiftOffsets

        return DateShiftOffsets(self.date_shift_key or "")


@dataclass
class Configuration:
    rules: list[dict[str, Any]]
    parameters: Parameters
    processing_errors: str = "raise"
    fhir_version: str | None = None
    warnings: list[str] = field(default_factory=list)
    keys: dict[str, KeyInfo] = field(default_factory=dict)
    digest: str = ""
    extensions: dict[str, Any] = field(default_factory=dict)
    random_keys: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    minimum: Any = None  # anonymizer.minimum.MinimumNecessary, when the extension is present

    def resolved_keys(self) -> dict[str, str]:
        """The keys in use (for worker processes of the same run; never logged)."""
        values = {
            "cryptoHashKey": self.parameters.crypto_hash_key,
            "dateShiftKey": self.parameters.date_shift_key,
            "encryptKey": self.parameters.encrypt_key,
        }
        return {name: value for name, value in values.items() if value}


def read_configuration_text(path: str | os.PathLike[str]) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigurationError(f"Cannot read configuration file {path}: {exc.strerror}") from None
    return parse_json(text)


def parse_json(text: str) -> Any:
    try:
        return jsonc.loads(text)
    except ValueError:
        raise _failed() from None


def _ci(mapping: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    """Newtonsoft matches property names case-insensitively."""
    out: dict[str, tuple[str, Any]] = {}
    for key, value in mapping.items():
        out.setdefault(key.lower(), (key, value))
    return out


def _get(mapping: dict[str, tuple[str, Any]], name: str, default: Any = None) -> Any:
    found = mapping.get(name.lower())
    return default if found is None else found[1]


def _bool(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _failed()


def _optional_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise _failed()
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise _failed() from None
    raise _failed()


def _enum(value: Any, names: tuple[str, ...], default: str) -> str:
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        return names[value]
    if isinstance(value, str) and value.strip().lower() in names:
        return value.strip().lower()
    raise _failed()


def _string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise _failed()
    return value if isinstance(value, str) else json.dumps(value)


def _net_to_string(value: Any) -> str:
    """`object.ToString()` of a rule setting as .NET prints it."""
    if value is True:
        return "True"
    if value is False:
        return "False"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, indent=2)
    return str(value)


_PLAIN_PATH = re.compile(
    r"(?:[A-Z][A-Za-z]*|[a-z][A-Za-z0-9]*)(?:\.[a-z][A-Za-z0-9]*)*"  # Patient.name.given, Resource.id
    r"(?: as (?!(?:and|or|xor|implies|div|mod|true|false)$)[A-Za-z][A-Za-z0-9]*)?"  # onset as Age
    r"|(nodesBy(Type|Name)\('[A-Za-z0-9]+'\)|nodesBy(Type|Name)\(\"[A-Za-z0-9]+\"\))(\.[a-z][A-Za-z0-9]*)?"
)


def _plainly_valid(path: str) -> bool:
    """Most rule paths are element chains or the reference's table forms, valid FHIRPath by their
    shape: they skip the (slow) full parse, everything else gets it."""
    return bool(path) and _PLAIN_PATH.fullmatch(path) is not None


def _parses(expression: str) -> bool:
    """Whether the full FHIRPath parse admits the expression. fhirpathpy (about 25 ms to import)
    is imported here, when a configuration first needs it."""
    from anonymizer.fhirpath import FhirPathSyntaxError, strict_parse

    try:
        strict_parse(expression)
    except FhirPathSyntaxError:
        return False
    return True


def _validate_rule(rule: Any) -> list[str]:
    warnings: list[str] = []
    if not isinstance(rule, dict) or "path" not in rule or "method" not in rule:
        raise ConfigurationError("Missing path or method in Fhir path rule config.")
    path = _net_to_string(rule["path"])
    method = _net_to_string(rule["method"]).lower()
    if not _plainly_valid(path) and not _parses(path):
        raise ConfigurationError(f"Invalid FHIR path {path}")
    if method not in METHODS:
        warnings.append(f"Anonymization method {method.upper()} is not supported (rule {path}).")
    if method == "substitute" and "replaceWith" not in rule:
        raise ConfigurationError(f"Missing replaceWith value in substitution rule at {path}.")
    if method == "perturb":
        _validate_perturb(rule, path)
    if method == "generalize":
        _validate_generalize(rule, path)
    return warnings


def _validate_perturb(rule: dict, path: str) -> None:
    if "roundTo" in rule:
        try:
            round_to = int(_net_to_string(rule["roundTo"]).strip())
        except ValueError:
            round_to = -1
        if not 0 <= round_to <= 28:
            raise ConfigurationError(f"RoundTo value is invalid at {path}.")
    if "span" not in rule:
        raise ConfigurationError(f"Span value is required in perturb rule at {path}.")
    try:
        span = float(_net_to_string(rule["span"]).strip())
    except ValueError:
        span = -1.0
    if not span >= 0:
        raise ConfigurationError(f"Span value is invalid at {path}.")
    if "rangeType" in rule:
        range_type = rule["rangeType"]
        if not isinstance(range_type, str) or range_type.lower() not in ("fixed", "proportional"):
            raise ConfigurationError(f"RangeType value is invalid at {path}.")


def _validate_generalize(rule: dict, path: str) -> None:
    if "cases" not in rule:
        raise ConfigurationError("Missing cases in FHIR path rule config.")
    cases = rule["cases"]
    if isinstance(cases, str):
        try:
            cases = jsonc.loads(cases)
        except ValueError:
            cases = None
    if not isinstance(cases, dict):
        raise ConfigurationError(f"Invalid Json format {_net_to_string(rule['cases'])}")
    for key, value in cases.items():
        if not (_parses(key) and _parses(_net_to_string(value))):
            raise ConfigurationError(f"Invalid cases expression [{key}, {_net_to_string(value)}]")
    if "otherValues" in rule:
        other = _net_to_string(rule["otherValues"])
        if other.lower() not in ("redact", "keep"):
            raise ConfigurationError(f"OtherValues setting is invalid at {other}.")


def _methods_used(rules: list[dict]) -> set[str]:
    return {_net_to_string(rule["method"]).lower() for rule in rules}


def config_digest(raw: dict) -> str:
    """SHA-256 of the canonical JSON of the configuration with every key value blanked."""
    blanked = json.loads(json.dumps(raw, default=str))
    params = next((v for k, v in blanked.items() if k.lower() == "parameters"), None)
    if isinstance(params, dict):
        for name in list(params):
            if name.lower() in {k.lower() for k in KEY_PARAMETERS}:
                params[name] = ""
    canonical = json.dumps(blanked, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def build_configuration(
    raw: Any,
    *,
    keys: Mapping[str, str] | None = None,
    allow_random_keys: bool = False,
    reference_date: date | None = None,
    environ: Mapping[str, str] | None = None,
) -> Configuration:
    if not isinstance(raw, dict):
        raise _failed()
    environ = os.environ if environ is None else environ
    top = _ci(raw)
    warnings: list[str] = []

    # Types first (the reference converts the whole object before validating it).
    version = _get(top, "fhirVersion")
    if version is not None and not isinstance(version, str):
        raise _failed()
    processing = _get(top, "processingErrors")
    if processing is None and "processingerror" in top:
        warnings.append("'processingError' is read as 'processingErrors' (the reference ignores it).")
        processing = _get(top, "processingError")
    processing_errors = _enum(processing, ("raise", "skip"), "raise")
    params_raw = _get(top, "parameters") or {}
    if not isinstance(params_raw, dict):
        raise _failed()
    parameters = _parameters(_ci(params_raw), reference_date)
    rules = _get(top, "fhirPathRules")
    if rules is not None and not isinstance(rules, list):
        raise _failed()
    for name in raw:
        known = ("fhirversion", "processingerrors", "processingerror", "fhirpathrules", "parameters")
        if name.lower() not in known and name not in EXTENSION_KEYS:
            warnings.append(f"Unknown top-level key {name!r} is ignored.")

    # Validation, in the reference's order.
    if not version:
        warnings.append("Version is not specified in configuration file.")
    elif version.lower() != "r4":
        raise ConfigurationError(
            f"Configuration of fhirVersion {version} is not supported. Expected fhirVersion: R4"
        )
    if rules is None:
        raise ConfigurationError("The configuration is invalid, please specify any fhirPathRules")
    for rule in rules:
        warnings.extend(_validate_rule(rule))

    config = Configuration(
        rules=rules,
        parameters=parameters,
        processing_errors=processing_errors,
        fhir_version=version,
        warnings=warnings,
        digest=config_digest(raw),
        extensions={k: raw[k] for k in EXTENSION_KEYS if k in raw},
        raw=raw,
    )
    if "minimumNecessary" in raw:
        from anonymizer.minimum import MinimumNecessary

        config.minimum = MinimumNecessary(raw["minimumNecessary"])
    _resolve_keys(config, _ci(params_raw), keys or {}, environ, allow_random_keys)
    if parameters.encrypt_key:
        bits = len(parameters.encrypt_key.encode("utf-8")) * 8
        if bits not in (128, 192, 256):
            raise ConfigurationError(
                f"Invalid encrypt key size : {bits} bits! Please provide key sizes of 128, 192 or 256 bits."
            )
    for message in warnings:
        log.warning(message)
    return config


def _parameters(params: dict[str, tuple[str, Any]], reference_date: date | None) -> Parameters:
    zips = _get(params, "restrictedZipCodeTabulationAreas")
    if zips is not None and (not isinstance(zips, list) or not all(isinstance(z, str) for z in zips)):
        raise _failed()
    date_range = _optional_int(_get(params, "dateShiftRange"))
    custom = _get(params, "customSettings")
    if custom is not None and not isinstance(custom, dict):
        raise _failed()
    out = Parameters(
        date_shift_scope=_enum(_get(params, "dateShiftScope"), DATE_SHIFT_SCOPES, "resource"),
        date_shift_fixed_offset=_optional_int(_get(params, "dateShiftFixedOffsetInDays")),
        date_shift_range=50 if date_range is None else date_range,
        partial_ages=_bool(_get(params, "enablePartialAgesForRedact")),
        partial_dates=_bool(_get(params, "enablePartialDatesForRedact")),
        partial_zip_codes=_bool(_get(params, "enablePartialZipCodesForRedact")),
        restricted_zip_codes=tuple(zips or ()),
        custom_settings=custom,
    )
    if out.date_shift_range < 1:
        raise ConfigurationError("dateShiftRange must be a positive number of days")
    if reference_date is not None:
        out.reference_date = reference_date
    return out


def _needed_keys(config: Configuration) -> set[str]:
    used = _methods_used(config.rules)
    needed = set()
    if "cryptohash" in used:
        needed.add("cryptoHashKey")
    if "encrypt" in used:
        needed.add("encryptKey")
    if "dateshift" in used and config.parameters.date_shift_fixed_offset is None:
        needed.add("dateShiftKey")
    return needed


_ATTRIBUTES = {
    "cryptoHashKey": "crypto_hash_key",
    "dateShiftKey": "date_shift_key",
    "encryptKey": "encrypt_key",
}


def _resolve_keys(
    config: Configuration,
    params: dict[str, tuple[str, Any]],
    keys: Mapping[str, str],
    environ: Mapping[str, str],
    allow_random: bool,
) -> None:
    needed = _needed_keys(config)
    for name, variable in KEY_PARAMETERS.items():
        value, source = keys.get(name) or "", "argument"
        if not value:
            value, source = environ.get(variable, ""), "env"
        if not value:
            value, source = _string(_get(params, name)), "file"
        if not value and name in needed:
            if not allow_random:
                raise ConfigurationError(
                    f"The parameter {name} is empty but a rule needs it: set {variable} "
                    f"(or '{name}' in the configuration's parameters), or pass --allow-random-keys "
                    "for a throw-away run."
                )
            value, source = secrets.token_hex(16), "random"
            config.random_keys = True
        if not value:
            continue
        if len(value.encode("utf-8")) < WEAK_KEY_BYTES:
            config.warnings.append(f"The key {name} is shorter than {WEAK_KEY_BYTES} bytes.")
        setattr(config.parameters, _ATTRIBUTES[name], value)
        config.keys[name] = KeyInfo(key_fingerprint(value), source)
