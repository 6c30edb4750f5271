from __future__ import annotations

from datetime import date
from typing import Any

from anonymizer import Engine

REFERENCE_DATE = date(2026, 1, 1)


def engine(rules: list[dict], **parameters: Any) -> Engine:
    config = {
        "fhirVersion": "R4",
        "fhirPathRules": rules,
        "parameters": {"dateShiftKey": "dummy", "cryptoHashKey": "123", **parameters},
    }
    return Engine.from_dict(config, reference_date=REFERENCE_DATE)


def rule(path: str, method: str, **settings: Any) -> dict:
    return {"path": path, "method": method, **settings}


# What the reference leaves of a Patient that a rule redacted whole, or that `skip` replaced.
REDACTED_PATIENT = {
    "resourceType": "Patient",
    "meta": {
        "security": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "REDACTED",
                "display": "redacted",
            }
        ]
    },
}
