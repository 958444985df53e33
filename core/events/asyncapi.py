"""An AsyncAPI 3.0.0 document of the events, built from the registry (core.events.types).

One channel per event type (its address is the routing key, i.e. the type), holding one
message: the envelope, whose `data` is that type's schema (components/schemas, pydantic's
JSON Schema with nested models as references); one `send` operation per channel, since the
project publishes every event; and a server per configured bus. Served at
GET /api/events/asyncapi.json and written by `manage.py events asyncapi` (docs/contract.md).
"""

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from core.events.schemas import wire_json_schema
from core.events.types import EVENT_TYPES, EventType

ASYNCAPI_VERSION = "3.0.0"
AMQP_BINDING_VERSION = "0.3.0"
SCHEMA_REF = "#/components/schemas/{model}"

# A broker URL's scheme -> the AsyncAPI protocol of its server.
PROTOCOLS = {
    "amqp": "amqp",
    "pyamqp": "amqp",
    "amqps": "amqps",
    "redis": "redis",
    "rediss": "redis",
    "nats": "nats",
    "tls": "nats",
    "kafka": "kafka",
    "kafka+ssl": "kafka-secure",
}
# A sink's BACKEND short name (core.events.buses.BACKENDS) -> its protocol.
SINK_PROTOCOLS = {"redis_streams": "redis", "nats": "nats", "kafka": "kafka"}


@dataclass(frozen=True)
class Server:
    """A bus the events are published to, as AsyncAPI describes it (never with credentials)."""

    name: str
    protocol: str
    host: str
    pathname: str = ""
    description: str = ""


def server_from_url(name: str, url: str, *, description: str = "") -> Server | None:
    """The server of a broker URL, keeping only host, port and path: never the user or password.
    An AMQP server's pathname is its vhost as an AMQP URI writes it ("/%2F" for "/", which
    kombu writes "//"). None for a URL with no network host (the embedded filesystem broker)."""
    parts = urlsplit(url)
    protocol = PROTOCOLS.get(parts.scheme.lower())
    if protocol is None or not parts.hostname:
        return None
    hostname = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # IPv6
    host = hostname if parts.port is None else f"{hostname}:{parts.port}"
    pathname = "/" + quote(amqp_vhost(url), safe="") if protocol.startswith("amqp") else parts.path
    return Server(name=name, protocol=protocol, host=host, pathname=pathname, description=description)


def amqp_vhost(url: str) -> str:
    """The vhost of an AMQP URL: its path without the leading slash, unquoted; "/" if none."""
    return unquote(urlsplit(url).path[1:]) or "/"


def _broker_url() -> str:
    """The relay's broker; the first of a failover list ("amqp://a//;amqp://b//")."""
    return (settings.EVENTS_BROKER_URL or settings.CELERY_BROKER_URL).split(";")[0]


def sink_server(name: str, options: dict[str, Any]) -> Server | None:
    """The server of one configured sink (docs/events.md ("Other buses")): its protocol from BACKEND (a short
    name, or a dotted class path whose URL's scheme tells), its host from URL or, for Kafka,
    the first of BOOTSTRAP_SERVERS. None for a sink with no network bus (memory)."""
    backend = str(options.get("BACKEND", ""))
    description = f"Sink {backend}; its streams, subjects or topics: docs/events.md, 'Other buses'"
    if options.get("URL"):
        server = server_from_url(name, options["URL"], description=description)
        protocol = SINK_PROTOCOLS.get(backend)
        return replace(server, protocol=protocol) if server and protocol else server
    if options.get("BOOTSTRAP_SERVERS"):
        first = str(options["BOOTSTRAP_SERVERS"]).split(",")[0].strip()
        return Server(name=name, protocol="kafka", host=first, description=description)
    return None


def configured_servers() -> list[Server]:
    """The RabbitMQ broker of the events exchange (always: in-project subscribers read it),
    then one server per bus of `EVENTS_SINKS`, read defensively: a dict name -> {"BACKEND": a
    short name of core.events.buses.BACKENDS or a dotted class path, "URL": the bus's URL
    (Kafka: "BOOTSTRAP_SERVERS": "host:port[,host:port]"), ...the sink's other options}."""
    exchange = f"The topic exchange {settings.EVENTS_EXCHANGE}; routing key = event type"
    servers = [server_from_url("rabbitmq", _broker_url(), description=exchange)]
    sinks = settings.EVENTS_SINKS
    servers += [sink_server(name, dict(options)) for name, options in sinks.items()]
    return [server for server in servers if server is not None]


def servers_document(servers: Iterable[Server]) -> dict[str, dict[str, str]]:
    """The `servers` object: name -> {host, protocol, pathname, description}."""
    document = {}
    for server in servers:
        entry = {"host": server.host, "protocol": server.protocol}
        if server.protocol.startswith("amqp"):
            entry["protocolVersion"] = "0.9.1"
        if server.pathname:
            entry["pathname"] = server.pathname
        if server.description:
            entry["description"] = server.description
        document[server.name] = entry
    return document


def _add_schemas(components: dict[str, Any], spec: EventType) -> str:
    """Put the type's data model (and the models it nests) in components/schemas; returns its
    name. Two different models with one name would make references ambiguous: refused."""
    schema = wire_json_schema(spec.schema, ref_template=SCHEMA_REF)
    definitions = schema.pop("$defs", {})
    for name, definition in [*definitions.items(), (spec.schema.__name__, schema)]:
        if components.setdefault(name, definition) != definition:
            raise ValueError(f"two event data models are named {name}; rename one ({spec.name})")
    return spec.schema.__name__


def _envelope_schema(spec: EventType, data_ref: str) -> dict[str, Any]:
    """The JSON body on the bus: the envelope (core.models.OutboxEvent.envelope)."""
    return {
        "type": "object",
        "required": ["id", "type", "version", "occurred_at", "source", "aggregate_id", "data"],
        "properties": {
            "id": {"type": "string", "format": "uuid", "description": "The event id: de-duplicate by it"},
            "type": {"type": "string", "const": spec.name},
            "version": {"type": "integer", "const": spec.version, "description": "The data schema's version"},
            "occurred_at": {"type": "string", "format": "date-time"},
            "source": {"type": "string", "const": spec.source, "description": "The publishing app"},
            "aggregate_id": {
                "type": "string",
                "description": "What the event is about (its order, payment...): events of one "
                "aggregate arrive in order",
            },
            "data": {"$ref": SCHEMA_REF.format(model=data_ref)},
        },
    }


def _message(spec: EventType, data_ref: str) -> dict[str, Any]:
    doc = (spec.schema.__doc__ or "").strip()
    message = {
        "name": spec.name,
        "title": f"{spec.name} v{spec.version}",
        "summary": f"Published by {spec.source}.",
        "contentType": "application/json",
        "headers": {
            "type": "object",
            "properties": {
                "event_type": {"type": "string", "const": spec.name},
                "event_version": {"type": "integer", "const": spec.version},
            },
        },
        "payload": _envelope_schema(spec, data_ref),
        "bindings": {"amqp": {"messageType": spec.name, "bindingVersion": AMQP_BINDING_VERSION}},
    }
    if doc and doc != (spec.schema.__mro__[1].__doc__ or "").strip():
        message["description"] = doc  # the model's own docstring, not one it inherits
    return message


def _channel(spec: EventType) -> dict[str, Any]:
    return {
        "address": spec.name,
        "messages": {spec.name: {"$ref": f"#/components/messages/{spec.name}"}},
        "bindings": {
            "amqp": {
                "is": "routingKey",
                "exchange": {
                    "name": settings.EVENTS_EXCHANGE,
                    "type": "topic",
                    "durable": True,
                    "autoDelete": False,
                    "vhost": amqp_vhost(_broker_url()),
                },
                "bindingVersion": AMQP_BINDING_VERSION,
            }
        },
    }


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of every registered event type and the configured buses
    (sorted by type, so the document only changes when the contract or the buses do)."""
    schemas: dict[str, Any] = {}
    messages, channels, operations = {}, {}, {}
    for name in sorted(EVENT_TYPES):
        spec = EVENT_TYPES[name]
        data_ref = _add_schemas(schemas, spec)
        messages[name] = _message(spec, data_ref)
        channels[name] = _channel(spec)
        operations[f"{name}.publish"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{name}"},
            "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": f"{settings.PROJECT_NAME} events",
            "version": settings.SPECTACULAR_SETTINGS.get("VERSION", "0.0.0"),
            "description": (
                "Domain events, each published once its transaction commits, at least once: "
                "de-duplicate by the envelope's id. A consumer must ignore data keys it does not "
                "know (additive changes keep the version). See docs/contract.md."
            ),
        },
        "defaultContentType": "application/json",
        "servers": servers_document(configured_servers()),
        "channels": channels,
        "operations": operations,
        "components": {"schemas": dict(sorted(schemas.items())), "messages": messages},
    }


class AsyncAPIView(APIView):
    """GET /api/events/asyncapi.json: the document, to staff, or to anyone with
    EVENTS_ASYNCAPI_PUBLIC (it names the broker's host, so it is not public by default)."""

    http_method_names = ["get", "head"]
    renderer_classes = [JSONRenderer]

    def get_permissions(self):
        public = settings.EVENTS_ASYNCAPI_PUBLIC
        return [AllowAny()] if public else [IsAdminUser()]

    @extend_schema(
        operation_id="events_asyncapi",
        summary="The AsyncAPI 3.0.0 document of the domain events",
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        return Response(asyncapi_document())
