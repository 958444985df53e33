"""The pipeline benchmark's plumbing (bench/pipeline_data.py, bench/pipeline_load.py) against a
live server, without a worker: each kind of flow is bought through the API as the bench's
clients buy it, paid as the sandbox page does, and its signed webhook is accepted. The
benchmark itself (servers, workers, figures) is run by hand: docs/benchmarks.md."""

import uuid

import pytest

from bench import pipeline_data as data
from bench.pipeline_load import _send, buy
from payments.models import SandboxCharge, WebhookEvent

pytestmark = pytest.mark.django_db(transaction=True)


def test_each_kind_is_bought_through_the_api_and_its_signed_webhook_accepted(live_server):
    port = int(live_server.url.rsplit(":", 1)[1])
    catalogue = data.catalogue_create(uuid.uuid4().hex[:8])
    flows = data.customers_create(catalogue, "smoke", 0, 3, list(data.KINDS))
    assert [flow.kind for flow in flows] == ["order", "booking", "subscription"]

    for flow in flows:
        flow.key, url = buy(port, flow.token, flow.kind, flow.request)
        flow.reference = url.rsplit("/", 1)[-1]
    data.charges_paid(flows)
    statuses = [_send(port, raw) for raw in data.webhook_requests(flows, port)]

    assert statuses == ["200", "200", "200"]
    charges = SandboxCharge.objects.filter(reference__in=[flow.reference for flow in flows])
    assert set(charges.values_list("status", flat=True)) == {"succeeded"}
    stored = WebhookEvent.objects.filter(
        reference__in=[flow.reference for flow in flows], signature_valid=True
    )
    assert stored.count() == 3
    assert data.confirmed_at(flows) == {}  # no worker: nothing confirmed yet
    assert data.expected_messages() == {"order": 2, "booking": 2, "subscription": 2}
    assert data.messages_state(flows)["counts"] == {}


def test_bookings_take_the_next_free_slot_and_a_new_hall_when_one_is_full():
    catalogue = data.catalogue_create(uuid.uuid4().hex[:8])
    catalogue.bookings_made = data.SLOTS_PER_HALL - 1

    last = data._next_slot(catalogue)
    first_of_next = data._next_slot(catalogue)

    assert len(catalogue.hall_ids) == 2 and last[0] == catalogue.hall_ids[0]
    assert first_of_next[0] == catalogue.hall_ids[1] and first_of_next[1] < last[1]


def test_latency_summary():
    assert data.summary_of([0.1] * 98 + [1.0, 3.0]) == {
        "p50_ms": 100.0, "p90_ms": 100.0, "p99_ms": 1000.0, "max_ms": 3000.0,
    }  # fmt: skip
