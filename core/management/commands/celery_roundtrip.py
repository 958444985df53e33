import time

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from core.models import Heartbeat
from core.tasks import heartbeat


class Command(BaseCommand):
    help = "Send a task through the broker to a worker and wait until its effect is in the database."

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=30.0)

    def handle(self, *args, timeout: float, **options):
        sent_at = timezone.now()
        started = time.monotonic()
        heartbeat.delay("roundtrip")
        while time.monotonic() - started < timeout:
            seen = Heartbeat.objects.filter(name="roundtrip", last_seen__gte=sent_at).first()
            if seen:
                elapsed = (time.monotonic() - started) * 1000
                self.stdout.write(f"round trip ok: task core.heartbeat ran on a worker in {elapsed:.0f} ms")
                return
            time.sleep(0.1)
        raise CommandError(f"no worker ran the task within {timeout:.0f}s: is `celery worker` running?")
