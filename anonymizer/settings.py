"""The engine's `ANONYMIZER_*` settings (docs/contract.md section 5), read in one place by the command line
and the Azure Function alike: the same variable means the same thing, and a bad value is the same
one-line error (naming the variable) wherever it is read. The storage settings are the Function's
own (`anonymizer.azure.settings`), built on these."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from anonymizer.errors import ConfigurationError

DEFAULT_MAX_LINE_BYTES = 268_435_456  # 256 MiB
DEFAULT_CHECKPOINT_BYTES = 268_435_456
ON_INVALID_LINE = ("drop", "fail")
ENGINES = ("auto", "core", "python")  # ANONYMIZER_ENGINE (anonymizer/core.py)


def parse_reference_date(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigurationError(f"{name} must be a date written YYYY-MM-DD, not {text!r}") from None


def parse_positive(text: str, name: str) -> int:
    try:
        value = int(text.strip().replace("_", ""))
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, not {text!r}") from None
    if value < 1:
        raise ConfigurationError(f"{name} must be at least 1, not {value}")
    return value


def parse_on_invalid_line(text: str, name: str) -> str:
    value = text.strip().lower()
    if value not in ON_INVALID_LINE:
        raise ConfigurationError(f"{name} must be drop or fail, not {text!r}")
    return value


def parse_engine(text: str, name: str) -> str:
    value = text.strip().lower()
    if value not in ENGINES:
        raise ConfigurationError(f"{name} must be auto, core or python, not {text!r}")
    return value


@dataclass(frozen=True)
class RunSettings:
    config: str | None = None  # a path, or an https:// blob URL (the Function); None: shipped default
    on_invalid_line: str = "drop"
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    checkpoint_bytes: int = DEFAULT_CHECKPOINT_BYTES
    reference_date: date | None = None
    engine: str = "auto"  # the compiled core when installed (auto), or always (core), or never
    threads: int | None = None  # the compiled core's threads per stream (None: the front end's default)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RunSettings:
        """Raises ConfigurationError naming the variable and the value it must have."""
        env = os.environ if environ is None else environ

        def given(name: str) -> str | None:
            value = env.get(name, "")
            return value if value.strip() else None

        text = given("ANONYMIZER_ON_INVALID_LINE")
        on_invalid = parse_on_invalid_line(text, "ANONYMIZER_ON_INVALID_LINE") if text else "drop"
        text = given("ANONYMIZER_MAX_LINE_BYTES")
        max_line = parse_positive(text, "ANONYMIZER_MAX_LINE_BYTES") if text else DEFAULT_MAX_LINE_BYTES
        text = given("ANONYMIZER_CHECKPOINT_BYTES")
        checkpoint = parse_positive(text, "ANONYMIZER_CHECKPOINT_BYTES") if text else DEFAULT_CHECKPOINT_BYTES
        text = given("ANONYMIZER_REFERENCE_DATE")
        reference = parse_reference_date(text, "ANONYMIZER_REFERENCE_DATE") if text else None
        text = given("ANONYMIZER_ENGINE")
        engine = parse_engine(text, "ANONYMIZER_ENGINE") if text else "auto"
        text = given("ANONYMIZER_THREADS")
        threads = parse_positive(text, "ANONYMIZER_THREADS") if text else None
        return cls(
            config=given("ANONYMIZER_CONFIG"),
            on_invalid_line=on_invalid,
            max_line_bytes=max_line,
            checkpoint_bytes=checkpoint,
            reference_date=reference,
            engine=engine,
            threads=threads,
        )
