from django.conf import settings
from django.db import models
from django.utils import timezone


class Heartbeat(models.Model):
    """The last time a named probe round-tripped through the broker to a worker.

    Beat sends `core.heartbeat("beat")` every 30 s, and `manage.py celery_roundtrip` sends one
    on demand, so staff can see at a glance that beat, broker and worker are all alive.
    """

    name = models.CharField(max_length=64, unique=True)
    last_seen = models.DateTimeField()
    count = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} @ {self.last_seen:%Y-%m-%d %H:%M:%S}"


class OutboxEvent(models.Model):
    """A domain event, written in the same transaction as the change it reports.

    The relay publishes unpublished rows in `seq` order and sets `published_at` only after
    the broker confirmed them. Published rows are pruned after EVENTS_RETENTION_DAYS.
    """

    seq = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(unique=True, editable=False)
    type = models.CharField(max_length=100, db_index=True)
    version = models.PositiveSmallIntegerField(default=1)
    source = models.CharField(max_length=50)
    aggregate_id = models.CharField(max_length=100, blank=True, db_index=True)
    occurred_at = models.DateTimeField(db_index=True)
    data = models.JSONField()
    published_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # The request (or task) that published it: carried to the subscribers' tasks for the logs.
    request_id = models.CharField(max_length=128, blank=True)

    class Meta:
        ordering = ["seq"]
        indexes = [
            models.Index(
                fields=["seq"], condition=models.Q(published_at__isnull=True), name="outbox_unpublished"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"

    @property
    def envelope(self) -> dict:
        return {
            "id": str(self.event_id),
            "type": self.type,
            "version": self.version,
            "occurred_at": self.occurred_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "source": self.source,
            "aggregate_id": self.aggregate_id,
            "data": self.data,
        }


class OutboxDelivery(models.Model):
    """An event waiting for one of the other buses (EVENTS_SINKS: Redis Streams, NATS, Kafka...).

    The relay adds one per event and bus in the transaction that marks the event published;
    the bus's own delivery (core/events/delivery.py) deletes it once that bus acknowledged the
    event. Each bus has its own rows, so one that is down delays only itself.
    """

    sink = models.CharField(max_length=50)
    event = models.ForeignKey(OutboxEvent, on_delete=models.PROTECT, related_name="deliveries")
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["sink", "event"]
        constraints = [models.UniqueConstraint(fields=["sink", "event"], name="outbox_delivery_once")]

    def __str__(self) -> str:
        return f"{self.sink} <- {self.event_id}"


class ProcessedEvent(models.Model):
    """(event, subscriber) pairs whose effect committed: a redelivery finds its row and stops."""

    event_id = models.UUIDField()
    subscriber = models.CharField(max_length=200)
    processed_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event_id", "subscriber"], name="processed_event_once"),
        ]

    def __str__(self) -> str:
        return f"{self.subscriber} <- {self.event_id}"


class DeadLetter(models.Model):
    """A subscriber that still failed after its retries; staff inspect and replay it."""

    event_id = models.UUIDField()
    event_type = models.CharField(max_length=100, db_index=True)
    subscriber = models.CharField(max_length=200, db_index=True)
    envelope = models.JSONField()
    error = models.TextField()
    traceback = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    first_failed_at = models.DateTimeField()
    last_failed_at = models.DateTimeField()
    replayed_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-last_failed_at"]
        constraints = [
            models.UniqueConstraint(fields=["event_id", "subscriber"], name="dead_letter_once"),
        ]
        permissions = [("replay_deadletter", "Can replay dead letters")]

    def __str__(self) -> str:
        return f"{self.subscriber} x {self.event_type} {self.event_id}"


class IdempotencyRecord(models.Model):
    """One Idempotency-Key of one caller for one endpoint, and the answer it got.

    A retried request with the same key and the same body gets the stored answer; the same
    key with another body is refused. Answers of 5xx are not stored, so a retry tries again.
    While the first request runs, `locked_until` is set: a duplicate gets 409
    request_in_progress until it answers, or until the lock lapses (its process died).
    Records are pruned IDEMPOTENCY_RETENTION_HOURS after they were created.
    """

    key = models.CharField(max_length=255)
    scope = models.CharField(max_length=100, help_text="The endpoint, e.g. payments.create")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the request's canonical JSON")
    resource_id = models.CharField(max_length=100, blank=True, help_text="What the first try created")
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    locked_until = models.DateTimeField(
        null=True, blank=True, help_text="A request with this key is running until then (or answers)"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "scope", "key"], name="idempotency_key_once"),
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.key}"
