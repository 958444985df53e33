from celery import shared_task

from core.events.tasks import prune, relay, sweep
from core.idempotency import idempotency_records_prune
from core.services import heartbeat_record

__all__ = ["heartbeat", "prune", "prune_idempotency_records", "relay", "sweep"]


@shared_task(name="core.heartbeat", acks_late=True, acks_on_failure_or_timeout=True, expires=60)
def heartbeat(name: str) -> None:
    heartbeat_record(name=name)


@shared_task(name="core.idempotency.prune", acks_late=True, acks_on_failure_or_timeout=True)
def prune_idempotency_records() -> int:
    """Beat, hourly: forget Idempotency-Keys older than IDEMPOTENCY_RETENTION_HOURS (idempotent)."""
    return idempotency_records_prune()
