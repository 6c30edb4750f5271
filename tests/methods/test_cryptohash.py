import pytest

from anonymizer.methods.cryptohash import Hmac256, transform_reference
from tests.helpers import engine, rule

HASH_ABC = "8f16771f9f8851b26f4d460fa17de93e2711c7e51337cb8a608a0f81e1c1b6ae"


def test_hmac_sha256_hex_with_key_123():
    hasher = Hmac256("123")
    assert hasher.hex("abc") == HASH_ABC
    assert hasher.hex("") == ""


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("#p1", "#@ID"),
        ("#", "#"),
        ("Patient/034AB16", "Patient/@ID"),
        (
            "http://example.org/fhir/Observation/apo89654/_history/2",
            "http://example.org/fhir/Observation/@ID/_history/2",
        ),
        ("urn:uuid:C757873D-EC9A-4326-A141-556F43239520", "urn:uuid:@ID"),
        ("urn:oid:1.2.3.4.5", "urn:oid:@ID"),
        ("034AB16", "@ID"),
        ("https://my-server.example.org/fhir/Patient/123", "@ID"),
        ("Patient/a_b", "@ID"),
        ("Patient/123/_history/2", "Patient/@ID/_history/2"),
        ("Patient/" + "a" * 65, "@ID"),
        ("DeviceRequest/r-1.2", "DeviceRequest/@ID"),
        ("NotAType/1", "@ID"),
    ],
)
def test_reference_id_part(reference, expected):
    assert transform_reference(reference, lambda _: "@ID") == expected


def test_references_and_ids_hash_consistently_and_label():
    e = engine([rule("Resource.id", "cryptoHash"), rule("nodesByType('Reference').reference", "cryptoHash")])
    patient = e.anonymize({"resourceType": "Patient", "id": "abc"})
    observation = e.anonymize(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "t"},
            "subject": {"reference": "Patient/abc"},
        }
    )
    assert patient["id"] == HASH_ABC
    assert observation["subject"]["reference"] == f"Patient/{HASH_ABC}"
    assert patient["meta"]["security"][0]["code"] == "CRYTOHASH"


def test_boolean_is_hashed_as_dotnet_prints_it():
    e = engine([rule("Patient.active", "cryptoHash")])
    assert e.anonymize({"resourceType": "Patient", "active": True})["active"] == Hmac256("123").hex("True")
