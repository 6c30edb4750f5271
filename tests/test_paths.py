import json

import pytest

from anonymizer.cli import shipped_config
from anonymizer.paths import BY_NAME, BY_TYPE, CHILD, IS_TYPE, Selector, parse_rule_path


@pytest.mark.parametrize(
    ("path", "kind", "resource_type", "selectors"),
    [
        ("Patient", "resource", "Patient", ()),
        ("Resource.id", "static", "Resource", (Selector(CHILD, "id"),)),
        (
            "nodesByType('HumanName').use",
            "table",
            "",
            (Selector(BY_TYPE, "HumanName"), Selector(CHILD, "use")),
        ),
        ('nodesByName("postalCode")', "table", "", (Selector(BY_NAME, "postalCode"),)),
        ("Patient.nodesByType('HumanName')", "static", "Patient", (Selector(BY_TYPE, "HumanName"),)),
        (
            "Condition.onset as Age",
            "static",
            "Condition",
            (Selector(CHILD, "onset"), Selector(IS_TYPE, "Age")),
        ),
        (
            "Observation.value.ofType(Quantity)",
            "static",
            "Observation",
            (Selector(CHILD, "value"), Selector(IS_TYPE, "Quantity")),
        ),
        (
            "(nodesByType('Observation').value as Quantity).value",
            "static",
            "",
            (
                Selector(BY_TYPE, "Observation"),
                Selector(CHILD, "value"),
                Selector(IS_TYPE, "Quantity"),
                Selector(CHILD, "value"),
            ),
        ),
        ("Patient.name.where(use='official')", "dynamic", "Patient", ()),
        ("Patient.name[0].family", "dynamic", "Patient", ()),
        ("Patient.name.given.first()", "dynamic", "Patient", ()),
    ],
)
def test_path_forms(path, kind, resource_type, selectors):
    parsed = parse_rule_path(path)
    assert (parsed.kind, parsed.resource_type, parsed.selectors) == (kind, resource_type, selectors)


@pytest.mark.parametrize(
    "profile", ["ms-sample.json", "safe-harbor.json", "shifted-dates.json", "flu-trends.json"]
)
def test_every_shipped_path_is_decided_by_the_compiled_plan(profile):
    rules = json.loads(shipped_config(profile).read_text())["fhirPathRules"]
    assert len(rules) == {"ms-sample.json": 193}.get(profile, len(rules))
    assert [r["path"] for r in rules if parse_rule_path(r["path"]).kind == "dynamic"] == []
