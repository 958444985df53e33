from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.models import Heartbeat

# The probe beat sends every 30 s (config/periodic.py); readiness checks its age (core.health).
BEAT_HEARTBEAT = "beat"


def heartbeat_record(*, name: str) -> Heartbeat:
    """Record that the probe `name` reached a worker now (an upsert; safe to repeat)."""
    with transaction.atomic():
        heartbeat, created = Heartbeat.objects.select_for_update().get_or_create(
            name=name, defaults={"last_seen": timezone.now(), "count": 1}
        )
        if not created:
            Heartbeat.objects.filter(pk=heartbeat.pk).update(last_seen=timezone.now(), count=F("count") + 1)
            heartbeat.refresh_from_db()
    return heartbeat
