"""Notifications' figures for Prometheus (core.metrics reads them at every scrape): one GROUP BY."""

from collections.abc import Iterator

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

from notifications.models import CHANNEL_NAMES, Notification


def collect() -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "fulfil_notifications",
        "Messages in the delivery log by channel and status.",
        labels=["channel", "status"],
    )
    counts = {
        (row["channel"], row["status"]): row["n"]
        for row in Notification.objects.values("channel", "status").annotate(n=Count("id")).order_by()
    }
    for channel in CHANNEL_NAMES:  # every pair has its series, 0 included
        for status in Notification.Status.values:
            family.add_metric([channel, status], counts.get((channel, status), 0))
    yield family
