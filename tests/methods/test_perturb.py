import random
from decimal import Decimal

from anonymizer.methods.perturb import PerturbMethod
from tests.helpers import engine, rule


def _method(**settings):
    e = engine([rule("Observation.value", "perturb", **settings)])
    method = e.rules[0].method
    method.random = random.Random(7)
    return method


def test_span_zero_only_rounds():
    assert _method(span=0, roundTo=2).perturb(Decimal("5.234"), "decimal") == Decimal("5.23")
    assert _method(span=0).perturb(5, "integer") == 5


def test_fixed_span_draws_stay_inside_and_cover_it():
    method = _method(span=6, roundTo=2)
    draws = [method.perturb(Decimal("5.234"), "decimal") for _ in range(10_000)]
    assert min(draws) >= Decimal("2.23") and max(draws) <= Decimal("8.24")
    assert all(d.as_tuple().exponent >= -2 for d in draws)
    assert max(draws) - min(draws) >= Decimal("0.9") * 6
    mean = sum(draws) / len(draws)
    assert abs(mean - Decimal("5.234")) <= Decimal("0.02") * 6


def test_integer_floors():
    method = _method(span=200, roundTo=2)
    assert all(method.perturb(1, "positiveInt") >= 1 for _ in range(200))
    assert all(method.perturb(10, "unsignedInt") >= 0 for _ in range(200))


def test_quantity_value_is_perturbed_and_subtree_claimed():
    e = engine(
        [rule("Observation.value", "perturb", span=0, roundTo=0), rule("nodesByType('Quantity')", "redact")]
    )
    out = e.anonymize(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "t"},
            "valueQuantity": {"value": 37.6, "unit": "Cel"},
        }
    )
    assert out["valueQuantity"] == {"value": Decimal(38), "unit": "Cel"}
    assert out["meta"]["security"] == [
        {"code": "PERTURBED", "display": "exact value is replaced with another exact value"}
    ]


def test_registered_by_name():
    assert isinstance(_method(span=1), PerturbMethod)
