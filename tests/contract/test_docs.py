"""docs/contract.md's table of event types is the registry's: it cannot drift. On a change,
the failure message is the new table to paste between the markers."""

from pathlib import Path

from django.conf import settings

from core.events.schemas import EventData, wire_json_schema
from core.events.types import EVENT_TYPES

DOC = Path(settings.BASE_DIR) / "docs" / "contract.md"
START = "<!-- event-table: generated, checked by tests/contract/test_docs.py -->"
END = "<!-- /event-table -->"


def _kind(prop: dict) -> str:
    """A field's wire type in a word: string, integer, money, date-time, [Allocation], ..."""
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[1]
    if "anyOf" in prop:
        return " or ".join(_kind(p) for p in prop["anyOf"])
    if prop.get("type") == "array":
        return f"[{_kind(prop['items'])}]"
    if prop.get("format") in ("date-time", "uuid"):
        return prop["format"]
    if prop.get("pattern") == r"^-?\d+(\.\d+)?$":
        return "money"
    return prop.get("type", "any")


def _fields(schema: dict, only: set[str] | None = None) -> str:
    required = set(schema.get("required", ()))
    return ", ".join(
        f"`{name}`{'' if name in required else '?'} {_kind(prop)}"
        for name, prop in schema["properties"].items()
        if only is None or name in only
    )


def _base(model: type[EventData]) -> type[EventData] | None:
    """The shared data model a type's model extends (PaymentData...), if any."""
    parent = model.__mro__[1]
    return parent if parent is not EventData and issubclass(parent, EventData) else None


def event_table() -> str:
    """One row per type: its base's name, if it has one, and the keys the type adds or
    redefines; then the bases and nested objects with their keys."""
    rows = ["| type | source | v | data (`?`: may be absent) |", "|---|---|---|---|"]
    objects = {}
    for name in sorted(EVENT_TYPES):
        spec = EVENT_TYPES[name]
        schema = wire_json_schema(spec.schema, ref_template="#/$defs/{model}")
        objects |= schema.pop("$defs", {})
        base = _base(spec.schema)
        if base is None:
            rows.append(f"| `{name}` | {spec.source} | {spec.version} | {_fields(schema)} |")
            continue
        objects[base.__name__] = wire_json_schema(base, ref_template="#/$defs/{model}")
        own = set(vars(spec.schema).get("__annotations__", {}))
        extra = f" + {_fields(schema, own)}" if own else ""
        rows.append(f"| `{name}` | {spec.source} | {spec.version} | {base.__name__}{extra} |")
    rows += ["", "| object | fields |", "|---|---|"]
    rows += [f"| {model} | {_fields(schema)} |" for model, schema in sorted(objects.items())]
    return "\n".join(rows)


def test_the_table_in_docs_contract_is_the_registry():
    text = DOC.read_text()
    documented = text[text.index(START) + len(START) : text.index(END)].strip()
    assert documented == event_table(), (
        f"docs/contract.md's table is out of date; it should be:\n\n{event_table()}"
    )
