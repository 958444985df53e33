"""Serializer fields shared by every app's API."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.money import quantize


@extend_schema_field(OpenApiTypes.STR)
class MoneyField(serializers.Field):
    """An amount as a string with exactly its currency's decimals ("75.00", "1500" for JPY).

    Reads `source` and the object's `currency`.
    """

    def __init__(self, **kwargs):
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def get_attribute(self, instance):
        return (getattr(instance, self.source), instance.currency)

    def to_representation(self, value) -> str:
        amount, currency = value
        return str(quantize(amount, currency))


@extend_schema_field(
    {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$", "example": "09:00:00"}
)
class WallTimeField(serializers.TimeField):
    """A local wall-clock time, "HH:MM:SS" without a UTC offset (so not OpenAPI's `time` format,
    RFC 3339's full-time, which has one)."""
