"""The contract of an event's data: a pydantic model per event type, checked by publish().

Each app declares the models of the types it publishes in `<app>/event_schemas.py` and
registers them from its `AppConfig.ready()` (`register_event_type(type, source=...,
schema=Model, version=N)`); core's own `dead_letter.recorded` is declared here.

A model describes the data as it travels, after publish()'s JSON round trip: money is a
string in the currency's major unit ("75.00"), times are ISO 8601 strings, public ids
("pay_...") are strings and database ids integers. So publish() validates the JSON text in
strict mode: a model says `int` and an int must be sent, not "42".

The publisher refuses a key its model does not declare (`extra="forbid"`), so the contract
never lags behind the code; the JSON Schema handed to consumers (`wire_json_schema`) leaves
`additionalProperties` open instead, because a later, additive version may add keys and a
consumer must ignore what it does not know (docs/contract.md).
"""

from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

# "75.00": a Decimal as DjangoJSONEncoder writes it, never a float.
Money = Annotated[
    str,
    StringConstraints(pattern=r"^-?\d+(\.\d+)?$"),
    Field(description="An amount in the currency's major unit, as a decimal string", examples=["75.00"]),
]
Currency = Annotated[
    str, StringConstraints(pattern=r"^[A-Z]{3}$"), Field(description="ISO 4217 code", examples=["USD"])
]


def optional(description: str = "", **kwargs: Any) -> Any:
    """A key that some events of the type carry and others leave out; when present it is
    never null. The model's default (None) is for validation only: publish() sends the data
    as given, so an absent key stays absent on the wire."""
    return Field(default=None, description=description or None, **kwargs)


class EventData(BaseModel):
    """Base of every event data model (and of the objects nested in one)."""

    model_config = ConfigDict(extra="forbid")


class WireJsonSchema(GenerateJsonSchema):
    """pydantic's JSON Schema of a model, as a consumer should read it.

    - an `optional()` key is simply not required (no `"default": null`, which would suggest
      the key may carry null);
    - objects stay open to keys a later, additive version adds (no
      `"additionalProperties": false`), although the publisher refuses unknown keys.
    """

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        if schema.get("default", ...) is None:
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)

    def _update_class_schema(self, json_schema: JsonSchemaValue, cls: type[Any], config: ConfigDict) -> None:
        super()._update_class_schema(json_schema, cls, config)
        if json_schema.get("additionalProperties") is False:
            del json_schema["additionalProperties"]


def wire_json_schema(model: type[BaseModel], *, ref_template: str) -> dict[str, Any]:
    """The model's JSON Schema (validation mode: what is accepted on the wire); nested models
    go to `$defs` and are referenced through `ref_template` (e.g. "#/components/schemas/{model}")."""
    return model.model_json_schema(
        mode="validation", schema_generator=WireJsonSchema, ref_template=ref_template
    )


class DeadLetterRecorded(EventData):
    """A subscriber failed for good on an event: once per new or reopened dead letter."""

    dead_letter_id: int = Field(description="The DeadLetter row, for the admin and `events replay`")
    event_id: UUID = Field(description="The event the subscriber failed on")
    event_type: str
    subscriber: str = Field(description="The subscriber's name, e.g. notifications.notify")
    error: str = Field(description="The last error, cut to 1,000 characters", max_length=1000)
    attempts: int = Field(description="Attempts so far, over every failure of this letter")
