import base64

import pytest

from anonymizer import Engine, ProcessingError, decrypt
from anonymizer.methods.encrypt import encrypt

KEY = "704ab12c8e3e46d4bea600ef62a6bec7"


def test_decrypts_the_reference_ciphertext():
    assert decrypt("qpxGp6T9DP7wB0EYPQwOYVrScQ/pq3c0D+JQ+hjnfkY=", KEY) == "abc"


@pytest.mark.parametrize("text", ["abc", "This is for test", "\u6d4b\u8bd5"])
def test_round_trip_with_random_iv(text):
    first, second = encrypt(text, KEY), encrypt(text, KEY)
    assert first != second
    assert decrypt(first, KEY) == text
    size = len(base64.b64decode(first))
    assert size == 16 + 16 * ((len(text.encode()) // 16) + 1)


def test_bad_ciphertext_raises_without_content():
    with pytest.raises(ProcessingError) as info:
        decrypt("YWJj", KEY)
    assert "YWJj" not in str(info.value) and info.value.__cause__ is None


def test_encrypt_rule_masks_and_labels():
    e = Engine.from_dict(
        {
            "fhirPathRules": [{"path": "Patient.name.family", "method": "encrypt"}],
            "parameters": {"encryptKey": KEY},
        }
    )
    out = e.anonymize({"resourceType": "Patient", "name": [{"family": "Doe"}]})
    assert decrypt(out["name"][0]["family"], KEY) == "Doe"
    assert out["meta"]["security"][0]["code"] == "MASKED"
