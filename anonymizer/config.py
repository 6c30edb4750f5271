"""Loading and validating Microsoft's anonymizer configuration format, unmodified.

Validation follows the reference's order and messages (docs/reference.md section 1); the first
failure raises ConfigurationError. Each method checks its own rule settings (`check_rule`, beside
its code in anonymizer.methods); the catalog of methods is handed in. Keys are resolved by
anonymizer.keys (docs/contract.md section 3).

Beyond the reference, which ignores what it does not know, a typo must never change the output
silently: an unknown key that is a near miss of a known one (another case, or at most two edits
away) is an error naming the key meant; other unknown keys are warnings (files written for other
tools still load); a value outside its set (`dateShiftScope`, `processingErrors`, `method`) is an
error listing the allowed values; a JSON syntax error says where it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from anonymizer import jsonc, keys
from anonymizer.errors import ConfigurationError

if TYPE_CHECKING:
    from anonymizer.minimum import MinimumNecessary

log = logging.getLogger("anonymizer.config")

DATE_SHIFT_SCOPES = ("resource", "file", "folder", "patient")
PROCESSING_ERRORS = ("raise", "skip")
# `description` documents a profile (the reference ignores unknown keys; we do not warn about it).
TOP_LEVEL_KEYS = ("fhirVersion", "processingErrors", "fhirPathRules", "parameters", "description")
PARAMETER_KEYS = (
    *keys.NAMES,
    "dateShiftScope",
    "dateShiftFixedOffsetInDays",
    "dateShiftRange",  # ours: the `patient` scope's range
    "enablePartialAgesForRedact",
    "enablePartialDatesForRedact",
    "enablePartialZipCodesForRedact",
    "restrictedZipCodeTabulationAreas",
    "customSettings",
)
EXTENSION_KEYS = ("minimumNecessary",)  # our namespaced extension (docs/contract.md section 1)


class MethodSpec(Protocol):
    """What configuration checking needs of a method (anonymizer.methods implements it; the
    catalog is handed in by the engine, which knows both)."""

    name: ClassVar[str]  # as the reference's documentation spells it ("dateShift")
    settings: ClassVar[tuple[str, ...]]  # the rule keys it reads besides path and method

    @classmethod
    def check_rule(cls, rule: dict, path: str) -> None: ...

    @classmethod
    def key_needed(cls, parameters: Parameters) -> str | None: ...


MethodCatalog = Mapping[str, type[MethodSpec]]  # by lower-case name


def _failed(why: str = "") -> ConfigurationError:
    return ConfigurationError("Failed to parse configuration file" + (f": {why}" if why else ""))


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance (insertions, deletions, substitutions, swaps)."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, previous2[j - 2] + 1)
            current.append(cost)
        previous2, previous = previous, current
    return previous[-1]


def near_miss(key: str, known: tuple[str, ...]) -> str | None:
    """The known name `key` most likely meant to be (another case, or a small typo), or None."""
    lowered = key.lower()
    best: tuple[int, str] | None = None
    for name in known:
        distance = edit_distance(lowered, name.lower())
        allowed = 2 if len(name) >= 5 else 1  # short names: one edit (`span` is not `name`)
        if distance <= allowed and (best is None or distance < best[0]):
            best = (distance, name)
    return None if best is None else best[1]


def _unknown_keys(
    keys: Any, known: tuple[str, ...], where: str, warnings: list[str], *, case_sensitive: bool
) -> None:
    """Near misses of a known key are errors; other unknown keys are warnings."""
    lowered = {name.lower(): name for name in known}
    for key in keys:
        if key in known or (not case_sensitive and key.lower() in lowered):
            continue
        if case_sensitive and key.lower() in lowered:
            raise ConfigurationError(
                f"{where}: key '{key}' must be written '{lowered[key.lower()]}' (rule keys are "
                "case-sensitive: the reference would ignore it)"
            )
        meant = near_miss(key, known)
        if meant is not None:
            raise ConfigurationError(f"{where}: unknown key '{key}': did you mean '{meant}'?")
        warnings.append(f"{where}: unknown key '{key}' is ignored.")


@dataclass
class Parameters:
    """The configuration's `parameters`, typed; keys by their names in anonymizer.keys."""

    keys: dict[str, str] = field(default_factory=dict, repr=False)
    date_shift_scope: str = "resource"
    date_shift_fixed_offset: int | None = None
    date_shift_range: int = 50
    partial_ages: bool = False
    partial_dates: bool = False
    partial_zip_codes: bool = False
    restricted_zip_codes: tuple[str, ...] = ()
    custom_settings: dict | None = None
    reference_date: date = field(default_factory=lambda: datetime.now(UTC).date())

    def key(self, name: str) -> str:
        """The key in use (never logged), "" when none is set."""
        return self.keys.get(name, "")


@dataclass
class Configuration:
    rules: list[dict[str, Any]]
    parameters: Parameters
    processing_errors: str = "raise"
    fhir_version: str | None = None
    warnings: list[str] = field(default_factory=list)
    keys: dict[str, keys.KeyInfo] = field(default_factory=dict)
    digest: str = ""
    random_keys: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    minimum: MinimumNecessary | None = None

    def resolved_keys(self) -> dict[str, str]:
        """The keys in use (for worker processes of the same run; never logged)."""
        return {name: value for name, value in self.parameters.keys.items() if value}


def read_configuration_text(path: str | os.PathLike[str]) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigurationError(f"Cannot read configuration file {path}: {exc.strerror}") from None
    return parse_json(text)


def parse_json(text: str) -> Any:
    try:
        return jsonc.loads(text)
    except json.JSONDecodeError as exc:
        raise _failed(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # a duplicate property
        raise _failed(str(exc)) from None


def _ci(mapping: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    """Newtonsoft matches property names case-insensitively."""
    out: dict[str, tuple[str, Any]] = {}
    for key, value in mapping.items():
        out.setdefault(key.lower(), (key, value))
    return out


def _get(mapping: dict[str, tuple[str, Any]], name: str, default: Any = None) -> Any:
    found = mapping.get(name.lower())
    return default if found is None else found[1]


def _bool(value: Any, name: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _failed(f"{name} must be true or false")


def _optional_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _failed(f"{name} must be a whole number")


def _enum(value: Any, names: tuple[str, ...], default: str, name: str) -> str:
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        return names[value]
    if isinstance(value, str) and value.strip().lower() in names:
        return value.strip().lower()
    meant = near_miss(value, names) if isinstance(value, str) else None
    hint = f" (did you mean '{meant}'?)" if meant else ""
    raise ConfigurationError(f"{name} {json.dumps(value)} is not one of {', '.join(names)}{hint}")


def _string(value: Any, name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise _failed(f"{name} must be a string")
    return value if isinstance(value, str) else json.dumps(value)


def setting_text(value: Any) -> str:
    """`object.ToString()` of a rule setting as .NET prints it (the reference reads settings so)."""
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


def _validate_rule(rule: Any, number: int, methods: MethodCatalog) -> list[str]:
    warnings: list[str] = []
    settings_keys = tuple(key for spec in methods.values() for key in spec.settings)
    if isinstance(rule, dict):
        # Before the reference's checks: `Path` or `methd` would otherwise read as a rule
        # without path or method.
        known = ("path", "method", *settings_keys)
        _unknown_keys(rule, known, f"rule {number}", warnings, case_sensitive=True)
    if not isinstance(rule, dict) or "path" not in rule or "method" not in rule:
        raise ConfigurationError("Missing path or method in Fhir path rule config.")
    path = setting_text(rule["path"])
    written = setting_text(rule["method"])
    spec = methods.get(written.lower())
    if not _plainly_valid(path) and not _parses(path):
        raise ConfigurationError(f"Invalid FHIR path {path}")
    if spec is None:
        names = tuple(m.name for m in methods.values())
        meant = near_miss(written, names)
        hint = f" (did you mean '{meant}'?)" if meant else ""
        # The reference warns here and fails when a resource meets the rule; a rule that cannot
        # run is refused before any data.
        raise ConfigurationError(
            f"Unknown anonymization method '{written}' in rule {number} ({path}): use one of "
            f"{', '.join(names)}{hint}"
        )
    for key in rule:
        if key in settings_keys and key not in spec.settings:
            warnings.append(f"rule {number} ({path}): '{key}' means nothing to method {written}; ignored.")
    spec.check_rule(rule, path)  # the method's own settings (the reference's ValidateRuleSettings)
    return warnings


def config_digest(raw: dict) -> str:
    """SHA-256 of the canonical JSON of the configuration with every key value blanked."""
    blanked = json.loads(json.dumps(raw, default=str))
    params = next((v for k, v in blanked.items() if k.lower() == "parameters"), None)
    if isinstance(params, dict):
        for name in list(params):
            if name.lower() in {k.lower() for k in keys.NAMES}:
                params[name] = ""
    canonical = json.dumps(blanked, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def build_configuration(
    raw: Any,
    *,
    methods: MethodCatalog,
    keys: Mapping[str, str] | None = None,
    allow_random_keys: bool = False,
    reference_date: date | None = None,
    environ: Mapping[str, str] | None = None,
) -> Configuration:
    """Check a parsed configuration and resolve its keys. `methods` is the catalog of methods
    (anonymizer.methods.REGISTRY; the engine passes it)."""
    if not isinstance(raw, dict):
        raise _failed("the configuration must be a JSON object")
    environ = os.environ if environ is None else environ
    top = _ci(raw)
    warnings: list[str] = []

    # Types first (the reference converts the whole object before validating it).
    version = _get(top, "fhirVersion")
    if version is not None and not isinstance(version, str):
        raise _failed("fhirVersion must be a string")
    processing = _get(top, "processingErrors")
    if processing is None and "processingerror" in top:
        warnings.append("'processingError' is read as 'processingErrors' (the reference ignores it).")
        processing = _get(top, "processingError")
    processing_errors = _enum(processing, PROCESSING_ERRORS, "raise", "processingErrors")
    for key in raw:  # our extension is read as written: a case variant would be ignored
        meant = near_miss(key, EXTENSION_KEYS) if key not in EXTENSION_KEYS else None
        if meant is not None:
            raise ConfigurationError(f"the configuration: unknown key '{key}': did you mean '{meant}'?")
    _unknown_keys(
        [k for k in raw if k.lower() != "processingerror" and k not in EXTENSION_KEYS],
        TOP_LEVEL_KEYS,
        "the configuration",
        warnings,
        case_sensitive=False,
    )
    params_raw = _get(top, "parameters") or {}
    if not isinstance(params_raw, dict):
        raise _failed("parameters must be an object")
    _unknown_keys(params_raw, PARAMETER_KEYS, "parameters", warnings, case_sensitive=False)
    parameters = _parameters(_ci(params_raw), reference_date)
    rules = _get(top, "fhirPathRules")
    if rules is not None and not isinstance(rules, list):
        raise _failed("fhirPathRules must be a list of rules")

    # Validation, in the reference's order.
    if not version:
        warnings.append("Version is not specified in configuration file.")
    elif version.lower() != "r4":
        raise ConfigurationError(
            f"Configuration of fhirVersion {version} is not supported. Expected fhirVersion: R4"
        )
    if rules is None:
        raise ConfigurationError("The configuration is invalid, please specify any fhirPathRules")
    for number, rule in enumerate(rules, 1):
        warnings.extend(_validate_rule(rule, number, methods))

    config = Configuration(
        rules=rules,
        parameters=parameters,
        processing_errors=processing_errors,
        fhir_version=version,
        warnings=warnings,
        digest=config_digest(raw),
        raw=raw,
    )
    if "minimumNecessary" in raw:
        # (its filters need fhirpathpy, about 25 ms to import: only when a profile has them)
        from anonymizer.minimum import MinimumNecessary

        config.minimum = MinimumNecessary(raw["minimumNecessary"])
    needed = {methods[setting_text(rule["method"]).lower()].key_needed(parameters) for rule in rules}
    _resolve_keys(config, _ci(params_raw), keys or {}, environ, allow_random_keys, needed)
    encrypt_key = parameters.key("encryptKey")
    if encrypt_key:
        bits = len(encrypt_key.encode("utf-8")) * 8
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
        raise _failed("restrictedZipCodeTabulationAreas must be a list of strings")
    date_range = _optional_int(_get(params, "dateShiftRange"), "dateShiftRange")
    custom = _get(params, "customSettings")
    if custom is not None and not isinstance(custom, dict):
        raise _failed("customSettings must be an object")
    out = Parameters(
        date_shift_scope=_enum(
            _get(params, "dateShiftScope"), DATE_SHIFT_SCOPES, "resource", "dateShiftScope"
        ),
        date_shift_fixed_offset=_optional_int(
            _get(params, "dateShiftFixedOffsetInDays"), "dateShiftFixedOffsetInDays"
        ),
        date_shift_range=50 if date_range is None else date_range,
        partial_ages=_bool(_get(params, "enablePartialAgesForRedact"), "enablePartialAgesForRedact"),
        partial_dates=_bool(_get(params, "enablePartialDatesForRedact"), "enablePartialDatesForRedact"),
        partial_zip_codes=_bool(
            _get(params, "enablePartialZipCodesForRedact"), "enablePartialZipCodesForRedact"
        ),
        restricted_zip_codes=tuple(zips or ()),
        custom_settings=custom,
    )
    if out.date_shift_range < 1:
        raise ConfigurationError("dateShiftRange must be a positive number of days")
    if reference_date is not None:
        out.reference_date = reference_date
    return out


def _resolve_keys(
    config: Configuration,
    params: dict[str, tuple[str, Any]],
    given: Mapping[str, str],
    environ: Mapping[str, str],
    allow_random: bool,
    needed: set[str | None],
) -> None:
    for name in keys.NAMES:
        value, source = keys.find(name, given, environ, _string(_get(params, name), name))
        if not value and name in needed:
            if not allow_random:
                raise ConfigurationError(keys.missing_key_message(name))
            value, source = keys.random_key(), keys.RANDOM
            config.random_keys = True
        if not value:
            continue
        if keys.is_weak(value):
            config.warnings.append(f"The key {name} is shorter than {keys.WEAK_KEY_BYTES} bytes.")
        config.parameters.keys[name] = value
        config.keys[name] = keys.KeyInfo(keys.fingerprint(value), source)
