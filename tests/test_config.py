import json
import logging

import pytest

from anonymizer import ConfigurationError, Engine
from anonymizer.config import config_digest
from anonymizer.engine import build_configuration
from anonymizer.keys import fingerprint as key_fingerprint
from tests.conftest import SAMPLE_CONFIG, need

HASH_RULE = [{"path": "Resource.id", "method": "cryptoHash"}]


def test_comments_trailing_commas_and_bom_are_accepted():
    text = '\ufeff{ // comment\n "fhirPathRules": [ /* x */ {"path": "Patient", "method": "keep",}, ],\n}'
    assert Engine.from_dict(text).config.rules == [{"path": "Patient", "method": "keep"}]


def test_duplicate_keys_fail_to_parse():
    with pytest.raises(ConfigurationError, match="Failed to parse configuration file: duplicate property"):
        Engine.from_dict('{"fhirPathRules": [], "fhirPathRules": []}')


def test_syntax_errors_say_where_as_written():
    """Comments and trailing commas are blanked, not removed: the position is the file's."""
    text = '{\n  // a comment, then a missing colon\n  "fhirPathRules": [],\n  /* two\n lines */ "x" 1\n}'
    with pytest.raises(ConfigurationError) as info:
        Engine.from_dict(text)
    assert (
        str(info.value) == "Failed to parse configuration file: Expecting ':' delimiter at line 5 column 15"
    )


def test_keys_are_matched_case_insensitively_and_types_checked():
    config = build_configuration({"FHIRPATHRULES": [], "Parameters": {"enablepartialdatesforredact": True}})
    assert config.parameters.partial_dates is True
    with pytest.raises(ConfigurationError, match='processingErrors "keep" is not one of raise, skip'):
        build_configuration({"fhirPathRules": [], "processingErrors": "keep"})
    with pytest.raises(ConfigurationError, match="enablePartialDatesForRedact must be true or false"):
        build_configuration({"fhirPathRules": [], "parameters": {"enablePartialDatesForRedact": "yes"}})


def test_processing_error_singular_is_an_alias_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        config = build_configuration({"fhirPathRules": [], "processingError": "skip"})
    assert config.processing_errors == "skip"
    assert "processingError" in caplog.text


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"fhirVersion": "Stu3", "fhirPathRules": []}, "Configuration of fhirVersion Stu3 is not supported."),
        ({}, "The configuration is invalid, please specify any fhirPathRules"),
        ({"fhirPathRules": [{"path": "Patient"}]}, "Missing path or method in Fhir path rule config."),
        ({"fhirPathRules": [{"path": "invalid()", "method": "redact"}]}, "Invalid FHIR path invalid()"),
        ({"fhirPathRules": [{"path": "Patient", "method": "substitute"}]}, "Missing replaceWith value"),
        (
            {"fhirPathRules": [{"path": "P", "method": "perturb", "span": "-1"}]},
            "Span value is invalid at P.",
        ),
        (
            {"fhirPathRules": [], "parameters": {"encryptKey": "12345678901234567890"}},
            "Invalid encrypt key size : 160",
        ),
    ],
)
def test_validation_messages(config, message):
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_configuration(config)


def test_missing_key_names_parameter_and_variable():
    with pytest.raises(ConfigurationError) as info:
        build_configuration({"fhirPathRules": HASH_RULE})
    assert "cryptoHashKey" in str(info.value) and "ANONYMIZER_CRYPTO_HASH_KEY" in str(info.value)


def test_key_resolution_order(monkeypatch):
    raw = {"fhirPathRules": HASH_RULE, "parameters": {"cryptoHashKey": "from-the-file-000"}}
    assert build_configuration(raw).keys["cryptoHashKey"].source == "file"
    monkeypatch.setenv("ANONYMIZER_CRYPTO_HASH_KEY", "from-the-environment")
    config = build_configuration(raw)
    assert config.parameters.key("cryptoHashKey") == "from-the-environment"
    assert config.keys["cryptoHashKey"].source == "env"
    config = build_configuration(raw, keys={"cryptoHashKey": "from-the-argument"})
    assert config.keys["cryptoHashKey"].fingerprint == key_fingerprint("from-the-argument")


def test_random_keys_only_when_allowed_and_said():
    config = build_configuration({"fhirPathRules": HASH_RULE}, allow_random_keys=True)
    assert config.keys["cryptoHashKey"].source == "random" and config.random_keys


def test_unused_keys_may_stay_empty_and_fixed_offset_needs_none():
    build_configuration({"fhirPathRules": [{"path": "Patient", "method": "redact"}]})
    build_configuration(
        {
            "fhirPathRules": [{"path": "nodesByType('date')", "method": "dateShift"}],
            "parameters": {"dateShiftFixedOffsetInDays": 3},
        }
    )


def test_weak_key_warns(caplog):
    with caplog.at_level(logging.WARNING):
        build_configuration({"fhirPathRules": HASH_RULE, "parameters": {"cryptoHashKey": "short"}})
    assert "shorter than 16 bytes" in caplog.text and "short" not in caplog.text.replace("shorter", "")


def test_digest_ignores_keys():
    a = {"fhirPathRules": HASH_RULE, "parameters": {"cryptoHashKey": "one"}}
    b = {"fhirPathRules": HASH_RULE, "parameters": {"cryptoHashKey": "two"}}
    assert config_digest(a) == config_digest(b)


def test_shipped_microsoft_sample_equals_microsoft_sample():
    from anonymizer.cli import shipped_config

    shipped = json.loads(shipped_config("ms-sample.json").read_text())
    sample = json.loads(need(SAMPLE_CONFIG).read_text(encoding="utf-8-sig"))
    assert shipped["fhirPathRules"] == sample["fhirPathRules"]
    assert all(shipped["parameters"][k] == "" for k in ("dateShiftKey", "cryptoHashKey", "encryptKey"))


@pytest.mark.parametrize(
    ("path", "plain"),
    [
        ("Patient.name.given", True),
        ("FamilyMemberHistory.condition.onset as Age", True),
        ("Observation.value as Quantity", True),
        ("Patient.name as and", False),
        ("Patient.name as Age.x", False),
        ("Patient.name.where(use = 'official')", False),
    ],
)
def test_element_paths_that_skip_the_full_parse_are_valid_fhirpath(path, plain):
    """Plain element paths skip fhirpathpy's parse at load (importing it alone costs about 25 ms):
    what the shortcut admits, the full parse admits too. (The reference's `nodesByType(...)`
    table forms, with either quote, are read by paths.py, not as FHIRPath.)"""
    from anonymizer.config import _plainly_valid
    from anonymizer.fhirpath import strict_parse

    assert _plainly_valid(path) == plain
    if plain:
        strict_parse(path)
