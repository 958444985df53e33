"""The AsyncAPI document: valid AsyncAPI 3.0.0, true to what is published, served to staff and
written by `manage.py events asyncapi`."""

import json
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import transaction
from jsonschema import Draft7Validator, Draft202012Validator

from core import events
from core.events.asyncapi import Server, asyncapi_document, server_from_url, servers_document
from core.events.types import EVENT_TYPES
from core.models import OutboxEvent
from tests.contract.fixtures import example_data
from tests.factories import StaffFactory, UserFactory

SPEC = Path(__file__).with_name("asyncapi-3.0.0.schema.json")
URL = "/api/events/asyncapi.json"


@pytest.fixture(scope="module")
def document() -> dict:
    return asyncapi_document()


def test_the_document_is_valid_asyncapi_3(document):
    spec = json.loads(SPEC.read_text())
    assert spec["$schema"] == "http://json-schema.org/draft-07/schema"
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in Draft7Validator(spec).iter_errors(document)]
    assert errors == []
    assert document["asyncapi"] == "3.0.0"


def _refs(node):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(document: dict, ref: str):
    assert ref.startswith("#/"), ref
    node = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_reference_resolves_within_the_document(document):
    refs = set(_refs(document))
    assert "#/components/schemas/Allocation" in refs
    for ref in refs:
        _resolve(document, ref)


def test_a_channel_a_message_and_a_send_operation_per_type(document):
    assert set(document["channels"]) == set(EVENT_TYPES)
    for name, spec in EVENT_TYPES.items():
        channel = document["channels"][name]
        assert channel["address"] == name
        assert channel["bindings"]["amqp"]["exchange"]["type"] == "topic"
        operation = document["operations"][f"{name}.publish"]
        assert operation["action"] == "send"
        assert _resolve(document, operation["channel"]["$ref"]) is channel
        message = _resolve(document, _resolve(document, operation["messages"][0]["$ref"])["$ref"])
        assert message["payload"]["properties"]["version"]["const"] == spec.version
        assert message["payload"]["properties"]["source"]["const"] == spec.source
        data = message["payload"]["properties"]["data"]["$ref"]
        assert data == f"#/components/schemas/{spec.schema.__name__}"


def test_optional_keys_are_not_required_and_not_null(document):
    paid = document["components"]["schemas"]["OrderPaid"]
    assert "late" not in paid["required"]
    assert paid["properties"]["late"] == {
        "description": "Present (true) when paid after it had expired or been cancelled",
        "title": "Late",
        "type": "boolean",
    }
    assert "additionalProperties" not in paid  # consumers ignore keys a later version adds


@pytest.mark.django_db(transaction=True)
def test_a_published_envelope_matches_its_message_in_the_document(document):
    with transaction.atomic():
        row = events.publish(
            "order.refunded",
            {
                "order_id": "ORD-1",
                "number": "ORD-1",
                "customer_id": 7,
                "status": "refunded",
                "total": Decimal("10.50"),
                "currency": "USD",
                "payment_id": None,
                "amount": Decimal("10.50"),
            },
        )
    envelope = OutboxEvent.objects.get(pk=row.pk).envelope
    message = document["components"]["messages"]["order.refunded"]
    schema = {**message["payload"], "components": document["components"]}
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)

    assert list(validator.iter_errors(envelope)) == []
    assert list(validator.iter_errors({**envelope, "version": 2}))  # a version the document does not know
    assert list(validator.iter_errors({**envelope, "data": {**envelope["data"], "total": 10.5}}))


def test_servers_carry_no_credentials():
    server = server_from_url("rabbitmq", "amqp://guest:s3cret@rabbit.internal:5672/shop")
    assert server == Server("rabbitmq", "amqp", "rabbit.internal:5672", "/shop")
    assert "s3cret" not in json.dumps(servers_document([server]))
    assert server_from_url("r", "amqp://u:p@h:5672//").pathname == "/%2F"  # kombu's "//" is vhost "/"
    assert server_from_url("fs", "filesystem://") is None  # the embedded broker is no server
    assert server_from_url("v6", "amqp://u:p@[::1]:5672/v").host == "[::1]:5672"


def test_servers_for_other_buses_come_from_events_sinks(settings):
    settings.EVENTS_SINKS = {
        "streams": {"BACKEND": "redis_streams", "URL": "redis://:pw@cache:6379/3"},
        "jetstream": {"BACKEND": "nats", "URL": "tls://user:pw@nats:4222"},
        "kafka": {"BACKEND": "kafka", "BOOTSTRAP_SERVERS": "k1:9092,k2:9092"},
        "custom": {"BACKEND": "x.KafkaLikeSink", "URL": "kafka://broker:9092"},
        "memory": {"BACKEND": "memory"},
    }
    settings.EVENTS_BROKER_URL = "amqp://guest:guest@rabbit:5672/%2F"

    servers = asyncapi_document()["servers"]

    assert {name: (s["protocol"], s["host"]) for name, s in servers.items()} == {
        "rabbitmq": ("amqp", "rabbit:5672"),
        "streams": ("redis", "cache:6379"),
        "jetstream": ("nats", "nats:4222"),
        "kafka": ("kafka", "k1:9092"),
        "custom": ("kafka", "broker:9092"),
    }
    assert "pw" not in json.dumps(servers) and "guest" not in json.dumps(servers)
    assert servers["rabbitmq"]["pathname"] == "/%2F"
    assert servers["streams"]["description"].startswith("Sink redis_streams;")


@pytest.mark.django_db
def test_the_endpoint_answers_staff_only(api_client, document):
    assert api_client.get(URL).status_code in (401, 403)
    api_client.force_authenticate(UserFactory())
    assert api_client.get(URL).status_code == 403

    api_client.force_authenticate(StaffFactory())
    response = api_client.get(URL)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == json.loads(json.dumps(document))
    assert api_client.head(URL).status_code == 200
    assert api_client.post(URL, {}, format="json").status_code == 405
    assert api_client.delete(URL).status_code == 405


@pytest.mark.django_db
def test_the_endpoint_answers_anyone_when_public(api_client, settings):
    settings.EVENTS_ASYNCAPI_PUBLIC = True
    assert api_client.get(URL).status_code == 200
    assert api_client.post(URL, {}, format="json").status_code == 405


def test_the_command_writes_the_same_document(tmp_path, document):
    out = StringIO()
    call_command("events", "asyncapi", stdout=out)
    assert json.loads(out.getvalue()) == document

    target = tmp_path / "asyncapi.json"
    call_command("events", "asyncapi", "--output", str(target), stderr=StringIO())
    assert json.loads(target.read_text()) == document


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_types_envelope_matches_the_document(event_type, document):
    with transaction.atomic():
        row = events.publish(event_type, example_data(event_type))
    message = document["components"]["messages"][event_type]
    schema = {**message["payload"], "components": document["components"]}
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)

    assert list(validator.iter_errors(OutboxEvent.objects.get(pk=row.pk).envelope)) == []
