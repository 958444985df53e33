"""Helpers for tests that publish events to exercise the backbone (relay, consumer, admin,
metrics), not an app's contract:

- `example_data(type, **keys)`: data that matches the type's schema (its required keys with
  plain values), with `keys` replacing or adding to it;
- the `any_event_data` fixture: every registered type takes any data for one test, for tests
  that publish made-up data on purpose. Use it from a conftest.py or a test module:

      from tests.contract.fixtures import any_event_data  # noqa: F401 (a fixture)
      pytestmark = pytest.mark.usefixtures("any_event_data")
"""

import dataclasses
from typing import Any

import pytest
from pydantic import ConfigDict

from core.events.schemas import EventData, wire_json_schema
from core.events.types import EVENT_TYPES


def _example(node: dict, root: dict) -> Any:
    if "$ref" in node:
        return _example(root["$defs"][node["$ref"].rsplit("/", 1)[1]], root)
    if "anyOf" in node:
        return None if {"type": "null"} in node["anyOf"] else _example(node["anyOf"][0], root)
    kind = node.get("type")
    if kind == "object":
        required = set(node.get("required", ()))
        return {key: _example(prop, root) for key, prop in node["properties"].items() if key in required}
    if kind in ("integer", "boolean", "array"):
        return {"integer": 1, "boolean": False, "array": []}[kind]
    if node.get("format") == "date-time":
        return "2026-01-01T00:00:00Z"
    if node.get("format") == "uuid":
        return "00000000-0000-4000-8000-000000000000"
    return node["examples"][0] if "examples" in node else "x"


def example_data(event_type: str, **keys: Any) -> dict[str, Any]:
    schema = wire_json_schema(EVENT_TYPES[event_type].schema, ref_template="#/$defs/{model}")
    return _example(schema, schema) | keys


class AnyData(EventData):
    """Any JSON object."""

    model_config = ConfigDict(extra="allow")


@pytest.fixture
def any_event_data(monkeypatch):
    """Every type's schema swapped for AnyData (its source and version kept) for one test."""
    for name, spec in list(EVENT_TYPES.items()):
        monkeypatch.setitem(EVENT_TYPES, name, dataclasses.replace(spec, schema=AnyData))
