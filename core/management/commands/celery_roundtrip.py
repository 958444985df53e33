import time

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from kombu.exceptions import OperationalError

from core.management.commands._services import broker_in_use, database_in_use, services_lines
from core.models import Heartbeat
from core.tasks import heartbeat

# Why a round trip fails although `make run` is up: this shell reads another configuration.
SAME_CONFIGURATION = (
    "`make run` and `make smoke` read the environment and .env: a worker started with other "
    "service variables (e.g. inline `DATABASE_URL=... make run`) is not seen here; put them "
    "in .env, or give this command the same ones."
)


class Command(BaseCommand):
    help = (
        "Send a task through the broker to a worker and wait until its effect is in the database; "
        "says which broker and database it uses."
    )

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=30.0)

    def handle(self, *args, timeout: float, **options):
        self.stdout.write(services_lines())
        sent_at = timezone.now()
        started = time.monotonic()
        try:
            heartbeat.delay("roundtrip")
        except OperationalError as exc:
            raise CommandError(f"cannot publish to the broker {broker_in_use()}: {exc}") from exc
        while time.monotonic() - started < timeout:
            seen = Heartbeat.objects.filter(name="roundtrip", last_seen__gte=sent_at).first()
            if seen:
                elapsed = (time.monotonic() - started) * 1000
                self.stdout.write(f"round trip ok: task core.heartbeat ran on a worker in {elapsed:.0f} ms")
                return
            time.sleep(0.1)
        raise CommandError(
            f"no worker ran the task within {timeout:.0f}s (broker {broker_in_use()}, database "
            f"{database_in_use()}): is `celery worker` running with this configuration? " + SAME_CONFIGURATION
        )
