from celery import shared_task

from core.events.tasks import prune, relay, sweep
from core.services import heartbeat_record

__all__ = ["heartbeat", "prune", "relay", "sweep"]


@shared_task(name="core.heartbeat", acks_late=True, acks_on_failure_or_timeout=True, expires=60)
def heartbeat(name: str) -> None:
    heartbeat_record(name=name)
