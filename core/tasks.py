from celery import shared_task

from core.services import heartbeat_record


@shared_task(name="core.heartbeat", acks_late=True, expires=60)
def heartbeat(name: str) -> None:
    heartbeat_record(name=name)
