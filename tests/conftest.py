from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CONFORMANCE = SHARED / "conformance"
SYNTHEA = SHARED / "data" / "synthea-export"
SAMPLE_CONFIG = SHARED / "reference" / "ms-configuration-sample.json"


def need(path: Path) -> Path:
    """Skip (not fail) when the reference material beside the checkout is absent."""
    if not path.exists():
        pytest.skip(f"{path} is not present (../shared beside the checkout holds the reference material)")
    return path


@pytest.fixture(autouse=True)
def _clear_anonymizer_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys and settings from the developer's environment must not leak into tests."""
    for name in list(os.environ):
        if name.startswith("ANONYMIZER_"):
            monkeypatch.delenv(name)
