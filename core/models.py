from django.db import models


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
