"""A configuration typo never changes the output silently: near misses of known keys (parameters,
rule keys, top-level keys including our `minimumNecessary`), method names and enum values are
errors naming what was meant; other unknown keys are warnings; `validate` finds what would fail
every run (FHIRPath that fails to evaluate, substitute values that are not the type, replacements
nested too deep) and reports missing keys as what a run must be given."""

from __future__ import annotations

import json

import pytest

from anonymizer import ConfigurationError, Engine
from anonymizer.cli import main
from anonymizer.engine import build_configuration
from anonymizer.validate import validate_configuration

HASH = {"path": "Resource.id", "method": "cryptoHash"}
ZIP = {"path": "nodesByType('Address')", "method": "redact"}


def _config(*, top=None, parameters=None, rules=None) -> dict:
    return {
        "fhirVersion": "R4",
        "fhirPathRules": rules if rules is not None else [ZIP],
        "parameters": {"enablePartialZipCodesForRedact": True, **(parameters or {})},
        **(top or {}),
    }


# (configuration, the error's text) - each a misspelling a user could make
TYPOS = [
    # parameters
    (
        _config(parameters={"restrictedZipCodeTabulationArea": ["036"]}),
        "parameters: unknown key 'restrictedZipCodeTabulationArea': did you mean "
        "'restrictedZipCodeTabulationAreas'?",
    ),
    (_config(parameters={"cryptoHashKeys": "x"}), "did you mean 'cryptoHashKey'?"),
    (_config(parameters={"dateShiftKeys": "x"}), "did you mean 'dateShiftKey'?"),
    (_config(parameters={"encrytKey": "x"}), "did you mean 'encryptKey'?"),
    (_config(parameters={"enablePartialDateForRedact": True}), "did you mean 'enablePartialDatesForRedact'?"),
    (_config(parameters={"enablePartialAgeForRedact": True}), "did you mean 'enablePartialAgesForRedact'?"),
    (
        _config(parameters={"enablePartialZipCodeForRedact": True}),
        "did you mean 'enablePartialZipCodesForRedact'?",
    ),
    (_config(parameters={"dateShiftFixedOffsetInDay": 3}), "did you mean 'dateShiftFixedOffsetInDays'?"),
    (_config(parameters={"dateShiftScop": "file"}), "did you mean 'dateShiftScope'?"),
    # enum values
    (
        _config(parameters={"dateShiftScope": "patients"}),
        "dateShiftScope \"patients\" is not one of resource, file, folder, patient (did you mean 'patient'?)",
    ),
    (_config(top={"processingErrors": "skipp"}), 'processingErrors "skipp" is not one of raise, skip'),
    # top-level keys
    (_config(top={"minimumNecesary": {"resourceTypes": ["Patient"]}}), "did you mean 'minimumNecessary'?"),
    (_config(top={"MinimumNecessary": {"resourceTypes": ["Patient"]}}), "did you mean 'minimumNecessary'?"),
    (_config(top={"paramters": {}}), "did you mean 'parameters'?"),
    (_config(top={"fhirVerison": "R4"}), "did you mean 'fhirVersion'?"),
    (_config(top={"processingErros": "skip"}), "did you mean 'processingErrors'?"),
    (
        {"fhirVersion": "R4", "fhirPathRule": [ZIP], "fhirPathRules": []},
        "did you mean 'fhirPathRules'?",
    ),
    # rule keys (case-sensitive in the reference)
    (_config(rules=[{"path": "Patient.name", "Method": "redact"}]), "key 'Method' must be written 'method'"),
    (
        _config(rules=[{"paht": "Patient.name", "method": "redact"}]),
        "unknown key 'paht': did you mean 'path'?",
    ),
    (
        _config(rules=[{"path": "Patient.name", "method": "substitute", "replaceWth": "x"}]),
        "did you mean 'replaceWith'?",
    ),
    (
        _config(rules=[{"path": "Observation.value", "method": "perturb", "span": 1, "rangetype": "fixed"}]),
        "key 'rangetype' must be written 'rangeType'",
    ),
    (
        _config(rules=[{"path": "Observation.value", "method": "perturb", "span": 1, "rondTo": 2}]),
        "did you mean 'roundTo'?",
    ),
    (
        _config(rules=[{"path": "Patient.gender", "method": "generalize", "case": {}}]),
        "did you mean 'cases'?",
    ),
    (
        _config(
            rules=[{"path": "Patient.gender", "method": "generalize", "cases": {}, "otherValue": "keep"}]
        ),
        "did you mean 'otherValues'?",
    ),
    # methods
    (
        _config(rules=[{"path": "Patient.name", "method": "redcat"}]),
        "Unknown anonymization method 'redcat' in rule 1 (Patient.name): use one of keep, redact, dateShift, "
        "cryptoHash, encrypt, substitute, perturb, generalize (did you mean 'redact'?)",
    ),
    (_config(rules=[HASH, {"path": "Resource.id", "method": "cryptohas"}]), "(did you mean 'cryptoHash'?)"),
    (_config(rules=[{"path": "nodesByType('date')", "method": "dateshfit"}]), "(did you mean 'dateShift'?)"),
    (_config(rules=[{"path": "Patient.name", "method": "substitue", "replaceWith": "x"}]), "'substitute'?"),
]


@pytest.mark.parametrize(("config", "message"), TYPOS, ids=[m[:48] for _, m in TYPOS])
def test_each_typo_is_an_error_naming_what_was_meant(config, message):
    with pytest.raises(ConfigurationError) as info:
        build_configuration(config, allow_random_keys=True)
    assert message in str(info.value)


def test_the_corpus_is_large_enough():
    assert len(TYPOS) >= 20


def test_restricted_zip_typo_fails_instead_of_changing_output():
    patient = {"resourceType": "Patient", "address": [{"postalCode": "03601"}]}
    right = Engine.from_dict(_config(parameters={"restrictedZipCodeTabulationAreas": ["036"]}))
    assert right.anonymize(patient)["address"] == [{"postalCode": "00000"}]
    with pytest.raises(ConfigurationError, match="restrictedZipCodeTabulationAreas"):
        Engine.from_dict(_config(parameters={"restrictedZipCodeTabulationArea": ["036"]}))


def test_unknown_keys_that_are_no_near_miss_are_warnings():
    config = build_configuration(
        _config(
            top={"comment": "for the 2026 study"},
            parameters={"owner": "data office"},
            rules=[{"path": "Patient.name", "method": "redact", "note": "why", "span": 1}],
        )
    )
    assert config.warnings == [
        "the configuration: unknown key 'comment' is ignored.",
        "parameters: unknown key 'owner' is ignored.",
        "rule 1: unknown key 'note' is ignored.",
        "rule 1 (Patient.name): 'span' means nothing to method redact; ignored.",
    ]


# -- validate -----------------------------------------------------------------------------------------
def test_validate_finds_what_would_fail_every_run():
    report = validate_configuration(
        _config(
            rules=[
                {"path": "Patient.repeat($this).name", "method": "redact"},
                {"path": "Patient.name", "method": "substitute", "replaceWith": {"famly": "x"}},
                {"path": "Patient.address", "method": "substitute", "replaceWith": "an address"},
                {"path": "Patient.gender", "method": "generalize", "cases": {"$this > 5": "'x'"}},
            ],
            top={"minimumNecessary": {"filters": {"Patient": "repeat($this).name.exists()"}}},
        )
    )
    assert report.errors == [
        "rule 2 (Patient.name): replaceWith is not a valid HumanName (The input FHIR resource is invalid: "
        "Type checking the data: Encountered unknown element 'famly' at HumanName)",
        "rule 3 (Patient.address): replaceWith is not an object, but the rule reaches Address",
        "rule 1 (Patient.repeat($this).name): the FHIRPath expression fails when evaluated (on an empty "
        "Patient): every run would fail there",
        "minimumNecessary: the filter for Patient fails when evaluated (on an empty Patient): it would drop "
        "every Patient",
    ]
    assert report.warnings == [
        "rule 4 (Patient.gender): a case cannot be evaluated on a code value: a processing error for every "
        "such value at run time"
    ]


def test_validate_refuses_a_replacement_nested_too_deep():
    deep: dict = {"family": "x"}
    for _ in range(300):
        deep = {"extension": [{"url": "u", "extension": [deep]}]}
    report = validate_configuration(
        _config(rules=[{"path": "Patient.name", "method": "substitute", "replaceWith": deep}])
    )
    assert report.errors == ["The replaceWith value at Patient.name is nested deeper than 64 levels"]


def test_validate_reports_missing_keys_as_to_set_and_exits_0(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(_config(rules=[HASH])))
    assert main(["validate", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "to set at run time: cryptoHashKey: a rule needs it; set ANONYMIZER_CRYPTO_HASH_KEY" in out
    assert main(["validate", "-c", str(path), "--require-keys"]) == 2
    path.write_text(json.dumps(_config(top={"minimumNecesary": {}})))
    assert main(["validate", "-c", str(path)]) == 2
    assert "did you mean 'minimumNecessary'?" in capsys.readouterr().out


def test_syntax_errors_in_validate_say_where(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text('{\n  "fhirPathRules": [\n    {"path": "Patient" "method": "keep"}\n  ]\n}')
    assert main(["validate", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Expecting ',' delimiter at line 3 column 24" in err and "Traceback" not in err
