"""Write the small synthetic `$export` sample that `fhir-anonymize demo` runs on.

Every person, address and number in it is invented here. Layout as a FHIR server's `$export`
writes it: `<timestamp>-<job>/<Type>-1-1.ndjson`. Run from the repository root.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "anonymizer" / "demo" / "export" / "2026-11-01T080000-demo"

PEOPLE = [
    (
        "pat-ada",
        "Ada",
        "Quillfeather",
        "female",
        "1961-03-14",
        "12 Lantern Row",
        "Springfield",
        "IL",
        "62704",
        "555-0142",
    ),
    (
        "pat-bo",
        "Bo",
        "Ravensworth",
        "male",
        "1987-11-02",
        "48 Orchard Lane",
        "Dover",
        "DE",
        "19901",
        "555-0178",
    ),
    (
        "pat-cyd",
        "Cydney",
        "Marchbanks",
        "other",
        "2014-06-30",
        "7 Tidewater Court",
        "Pierre",
        "SD",
        "57501",
        "555-0111",
    ),
]


def patient(pid, given, family, gender, birth, line, city, state, zip_, phone):
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"versionId": "1", "lastUpdated": "2026-10-30T09:15:27.966+00:00"},
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{given} {family}</div>',
        },
        "extension": [
            {
                "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
                "valueCode": gender[0].upper(),
            }
        ],
        "identifier": [{"system": "http://hospital.example.org/mrn", "value": f"MRN-{pid.upper()}"}],
        "name": [{"use": "official", "family": family, "given": [given]}],
        "telecom": [{"system": "phone", "value": phone, "use": "home"}],
        "gender": gender,
        "birthDate": birth,
        "address": [{"line": [line], "city": city, "state": state, "postalCode": zip_, "country": "US"}],
    }


def encounter(pid, n, start):
    return {
        "resourceType": "Encounter",
        "id": f"enc-{pid}-{n}",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [
            {
                "coding": [
                    {
                        "system": "http://snomed.info/sct",
                        "code": "185349003",
                        "display": "Encounter for check up",
                    }
                ]
            }
        ],
        "subject": {"reference": f"Patient/{pid}", "display": "patient"},
        "period": {"start": f"{start}T09:00:00-05:00", "end": f"{start}T09:30:00-05:00"},
    }


def observation(pid, n, when, value):
    return {
        "resourceType": "Observation",
        "id": f"obs-{pid}-{n}",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "8310-5", "display": "Body temperature"}],
            "text": "Body temperature",
        },
        "subject": {"reference": f"Patient/{pid}"},
        "encounter": {"reference": f"Encounter/enc-{pid}-{n}"},
        "effectiveDateTime": f"{when}T09:10:00-05:00",
        "valueQuantity": {
            "value": value,
            "unit": "Cel",
            "system": "http://unitsofmeasure.org",
            "code": "Cel",
        },
    }


def immunization(pid, n, when):
    return {
        "resourceType": "Immunization",
        "id": f"imm-{pid}-{n}",
        "status": "completed",
        "vaccineCode": {
            "coding": [
                {
                    "system": "http://hl7.org/fhir/sid/cvx",
                    "code": "150",
                    "display": "Influenza, injectable, quadrivalent, preservative free",
                }
            ]
        },
        "patient": {"reference": f"Patient/{pid}"},
        "encounter": {"reference": f"Encounter/enc-{pid}-{n}"},
        "occurrenceDateTime": f"{when}T09:20:00-05:00",
        "primarySource": True,
    }


def condition(pid, n, onset):
    return {
        "resourceType": "Condition",
        "id": f"cond-{pid}-{n}",
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}
            ]
        },
        "code": {
            "coding": [{"system": "http://snomed.info/sct", "code": "6142004", "display": "Influenza"}],
            "text": "Influenza",
        },
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": f"{onset}T08:00:00-05:00",
        "note": [{"text": "Patient called in with fever."}],
    }


def main() -> None:
    rows: dict[str, list[dict]] = {
        "Patient": [],
        "Encounter": [],
        "Observation": [],
        "Immunization": [],
        "Condition": [],
    }
    for person in PEOPLE:
        pid = person[0]
        rows["Patient"].append(patient(*person))
        for n, day in enumerate(("2025-10-06", "2026-01-19"), 1):
            rows["Encounter"].append(encounter(pid, n, day))
            rows["Observation"].append(observation(pid, n, day, 37.2 + n / 10))
        rows["Immunization"].append(immunization(pid, 1, "2025-10-06"))
        rows["Condition"].append(condition(pid, 2, "2026-01-17"))
    OUT.mkdir(parents=True, exist_ok=True)
    for resource_type, resources in rows.items():
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in resources)
        (OUT / f"{resource_type}-1-1.ndjson").write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
