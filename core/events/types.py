"""The registry of event types: for each, the app that publishes it (the envelope's source),
the model of its data and the version of that model (the envelope's `version`).

Core registers its own `dead_letter.recorded` here; every app registers the types it
publishes from its `AppConfig.ready()`, with the models of its `event_schemas.py`. There is
no type without a schema: publish() validates every event's data against it.
"""

from dataclasses import dataclass

from core.events.schemas import DeadLetterRecorded, EventData


@dataclass(frozen=True)
class EventType:
    name: str
    source: str
    schema: type[EventData]
    version: int


EVENT_TYPES: dict[str, EventType] = {}


def register_event_type(
    event_type: str, *, source: str, schema: type[EventData], version: int = 1
) -> EventType:
    """Add an event type before anything publishes it.

    Registering the same type again with the same source, schema and version does nothing (an
    app's ready() may run twice in a test process); anything else for a known type is refused,
    so two apps cannot publish one type and one type cannot have two contracts.
    """
    if not (isinstance(schema, type) and issubclass(schema, EventData)):
        raise ValueError(
            f"{event_type}: schema must be a core.events.schemas.EventData model, not {schema!r}"
        )
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{event_type}: version must be a positive int, not {version!r}")
    spec = EventType(name=event_type, source=source, schema=schema, version=version)
    known = EVENT_TYPES.get(event_type)
    if known is not None and known != spec:
        if known.source != source:
            raise ValueError(f"{event_type} is already published by {known.source}")
        raise ValueError(
            f"{event_type} is already registered with {known.schema.__name__} v{known.version}; "
            f"not {schema.__name__} v{version}"
        )
    EVENT_TYPES[event_type] = spec
    return spec


register_event_type("dead_letter.recorded", source="core", schema=DeadLetterRecorded)
