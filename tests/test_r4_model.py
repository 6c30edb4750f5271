"""The R4 element model read from fhirpathpy and fhirclient."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_fhirclients_classes_load_without_its_http_client():
    """fhirclient's package __init__ imports `requests` (60 ms at every start); the model mounts
    only its generated classes, in a fresh interpreter as a worker would."""
    code = (
        "import sys; from anonymizer.r4 import model; patient = model.complex_type('Patient'); "
        "assert patient.elements['birthDate'].type_name == 'date'; "
        "assert patient.elements['name'].is_list; "
        "assert model.complex_type('Patient.contact').elements['name'].type_name == 'HumanName'; "
        "assert 'requests' not in sys.modules and 'fhirclient' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)
