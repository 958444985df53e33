"""Payments' figures for Prometheus (core.metrics reads them at every scrape): two GROUP BYs."""

from collections.abc import Iterator

from django.db.models import Case, CharField, Count, Q, Value, When
from prometheus_client.core import GaugeMetricFamily, Metric

from payments.models import Payment, WebhookEvent

# What became of a stored webhook, from its proof, processed_at and error.
WEBHOOK_OUTCOMES = ("processed", "failed", "refused", "waiting")
_WEBHOOK_OUTCOME = Case(
    When(proof=WebhookEvent.Proof.NONE, then=Value("refused")),
    When(processed_at__isnull=True, then=Value("waiting")),
    When(error="", then=Value("processed")),
    default=Value("failed"),
    output_field=CharField(),
)


def collect() -> Iterator[Metric]:
    payments = GaugeMetricFamily(
        "fulfil_payments", "Payments by status and gateway, as they are now.", labels=["status", "gateway"]
    )
    flagged = GaugeMetricFamily(
        "fulfil_payments_flagged",
        "Payments flagged for staff (flagged_reason set), by gateway.",
        labels=["gateway"],
    )
    rows = (
        Payment.objects.values("gateway", "status")
        .annotate(n=Count("id"), flagged=Count("id", filter=~Q(flagged_reason="")))
        .order_by()
    )
    by_key, flagged_by_gateway = {}, {}
    for row in rows:
        by_key[row["gateway"], row["status"]] = row["n"]
        flagged_by_gateway[row["gateway"]] = flagged_by_gateway.get(row["gateway"], 0) + row["flagged"]
    # Every status of a gateway in use has its series, 0 included, so that rates start from 0.
    for gateway in sorted(flagged_by_gateway):
        for status in Payment.Status.values:
            payments.add_metric([status, gateway], by_key.get((gateway, status), 0))
        flagged.add_metric([gateway], flagged_by_gateway[gateway])
    yield payments
    yield flagged

    webhooks = GaugeMetricFamily(
        "fulfil_webhooks",
        "Stored webhooks by gateway and outcome: processed, failed (processed with an error), "
        "refused (bad or missing signature, or not a notification), waiting (not processed yet).",
        labels=["gateway", "outcome"],
    )
    counts = {}
    for row in (
        WebhookEvent.objects.values("gateway", outcome=_WEBHOOK_OUTCOME).annotate(n=Count("id")).order_by()
    ):
        counts[row["gateway"], row["outcome"]] = row["n"]
    for gateway in sorted({gateway for gateway, _ in counts}):
        for outcome in WEBHOOK_OUTCOMES:
            webhooks.add_metric([gateway, outcome], counts.get((gateway, outcome), 0))
    yield webhooks
