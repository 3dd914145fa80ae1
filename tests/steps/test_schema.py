"""Payload schemas: JSON Schema dicts and pydantic models check payloads the same way."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from wayang.steps.model import PayloadError
from wayang.steps.schema import SchemaError, payload_schema

ORDER = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"qty": {"type": "integer", "minimum": 1}},
                "required": ["qty"],
            },
        },
    },
    "required": ["id"],
    "additionalProperties": False,
}


class Item(BaseModel):
    qty: int


class Order(BaseModel):
    id: str
    items: list[Item] = []


def check(spec: object, data: object) -> PayloadError:
    schema = payload_schema(spec, "'input'")
    assert schema is not None
    with pytest.raises(PayloadError) as caught:
        schema.validate(data)
    return caught.value


def test_no_schema_means_no_checking() -> None:
    assert payload_schema(None, "'input'") is None


def test_a_valid_payload_comes_back_as_the_dict() -> None:
    schema = payload_schema(ORDER, "'input'")
    assert schema is not None
    data = {"id": "a1", "items": [{"qty": 2}]}
    assert schema.validate(data) == data
    assert schema.json_schema == ORDER
    assert schema.model is None


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"items": []}, "id", "is required"),
        ({"id": "a", "items": [{"qty": 0}]}, "items.0.qty", "bigger than or equal to 1 (got 0)"),
        ({"id": "a", "items": [{}]}, "items.0.qty", "is required"),
        ({"id": 5}, "id", "must be string (got 5)"),
        ({"id": "a", "extra": 1}, "", "does not allow: {'extra'}"),
        ([], "", "must be object"),
    ],
)
def test_json_schema_errors_name_the_field(data: object, field: str, words: str) -> None:
    error = check(ORDER, data)
    assert error.field == field
    assert words in error.message
    assert str(error).startswith(f"{field or '(payload)'}: ")


def test_identical_schemas_share_one_compiled_validator() -> None:
    first = payload_schema(dict(ORDER), "'input'")
    second = payload_schema({key: ORDER[key] for key in reversed(ORDER)}, "'input'")
    assert first is not None and second is not None
    assert first.validate({"id": "x"}) == second.validate({"id": "x"})


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"type": "nope"}, "not a valid JSON Schema: Unknown type"),
        ({"properties": {"a": {"type": "string", "pattern": "("}}}, "not a valid JSON Schema"),
        ({"$ref": "#/definitions/missing"}, "not a valid JSON Schema"),
        (5, "must be a JSON Schema dict or a pydantic model class, not int"),
        (Order(id="x"), "not Order"),
    ],
)
def test_an_unusable_schema_is_a_schema_error(spec: object, words: str) -> None:
    with pytest.raises(SchemaError) as caught:
        payload_schema(spec, "'input'")
    assert str(caught.value).startswith("'input' ")
    assert words in str(caught.value)


def test_a_pydantic_model_gives_an_instance() -> None:
    schema = payload_schema(Order, "'input'")
    assert schema is not None
    value = schema.validate({"id": "a", "items": [{"qty": 3}]})
    assert value == Order(id="a", items=[Item(qty=3)])
    assert schema.model is Order
    assert schema.validate(value) is value
    assert schema.json_schema["required"] == ["id"]
    assert "Order" in repr(schema.json_schema)


def test_pydantic_errors_name_the_first_failing_field() -> None:
    error = check(Order, {"id": "a", "items": [{"qty": "many"}]})
    assert error.field == "items.0.qty"
    assert "valid integer" in error.message
    assert "(got 'many')" in error.message
    missing = check(Order, {})
    assert missing.field == "id"
    assert missing.message == "Field required"
