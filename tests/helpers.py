from __future__ import annotations

from datetime import date
from typing import Any

from anonymizer import Engine

REFERENCE_DATE = date(2026, 1, 1)


def engine(rules: list[dict], *, generated_code: bool = True, **parameters: Any) -> Engine:
    config = {
        "fhirVersion": "R4",
        "fhirPathRules": rules,
        "parameters": {"dateShiftKey": "dummy", "cryptoHashKey": "123", **parameters},
    }
    return Engine.from_dict(config, reference_date=REFERENCE_DATE, generated_code=generated_code)


def shape_state(engine: Engine, resource_type: str, *slots: str):
    """This thread's state (shapes.NodeRun) of the plan node at the root of `resource_type`, or
    below it through the complex slots named."""
    plan = engine.plan_for(resource_type).root
    for key in slots:
        plan = plan[key].child
    return engine.runtime().node(plan)


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


def run_on_terminal(arguments: list[str], env: dict[str, str]) -> tuple[int, str]:
    """`python -m anonymizer ARGUMENTS` with stderr on a pseudo-terminal (where progress shows):
    its exit status and what it wrote there."""
    import os
    import pty
    import subprocess
    import sys
    from pathlib import Path

    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "anonymizer", *arguments],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=slave,
    )
    os.close(slave)
    output = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        output += chunk
    status = process.wait()
    os.close(master)
    return status, output.decode()
