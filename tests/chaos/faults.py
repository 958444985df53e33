"""The faults of a chaos run, each injected as it happens in production, on a timeline of its own.

- PostgreSQL: `pg_terminate_backend` on every other backend of the test database (the web's,
  the workers', beat's), as a failover or an administrator would. Only the harness's own
  connections (application_name `chaos-harness`: the test's observer and this thread) are spared.
- Workers: a real prefork worker (tests/conftest.py, WorkerProcess) SIGKILLed with its pool
  children, no goodbye to RabbitMQ, and a replacement started.
- RabbitMQ: the broker refuses the test user every connection to its vhost for
  OUTAGE_SECONDS (tests/events/test_broker_recovery.py, `broker_outage`: permissions revoked,
  open connections closed), then takes it back; what waited must be done within a minute.
"""

import threading
import time
from collections.abc import Callable

import psycopg
from django.db import connection
from psycopg import sql

from core.models import OutboxEvent
from core.queues import QUEUE_NAMES
from payments.models import Payment, SandboxCharge, WebhookEvent
from subscriptions.models import Invoice, Toybox
from tests.conftest import rabbitmq_queues
from tests.events.test_broker_recovery import broker_outage

HARNESS = "chaos-harness"  # application_name of the connections the faults spare
OUTAGE_SECONDS = 30
RECOVERY_SECONDS = 60  # the promise: what waited is done within a minute of the broker's return
RECOVERY_PATIENCE = 75  # how long the measurement waits before it reports the promise broken

# (share of the flows bought, fault): the outage and its recovery measurement come first, so
# that later faults do not blur what the recovery took.
PLAN = (
    (0.05, "postgres"),
    (0.12, "worker"),
    (0.20, "postgres"),
    (0.28, "outage"),
    (0.55, "worker"),
    (0.65, "postgres"),
    (0.78, "worker"),
    (0.88, "postgres"),
)


def harness_connection() -> psycopg.Connection:
    """A connection of the harness's own to the test database, spared by the faults."""
    db = connection.settings_dict
    return psycopg.connect(
        dbname=db["NAME"],
        user=db["USER"],
        password=db["PASSWORD"] or None,
        host=db["HOST"],
        port=db["PORT"] or None,
        application_name=HARNESS,
        autocommit=True,
        connect_timeout=10,
    )


def spare_this_connection() -> None:
    """Let the faults spare this thread's Django connection (the test's observer)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('application_name', %s, false)", [HARNESS])


def backends_terminate(db: psycopg.Connection) -> int:
    """Terminate every other client backend of the test database; how many there were."""
    rows = db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND backend_type = 'client backend' AND application_name <> %s",
        [HARNESS],
    ).fetchall()
    return len(rows)


# What the broker's return left to do, counted from before a moment (the tables named by {}).
WAITING = {
    "unpublished events": (
        "SELECT count(*) FROM {} WHERE published_at IS NULL AND occurred_at < %s",
        OutboxEvent,
    ),
    "unprocessed webhooks": (
        "SELECT count(*) FROM {} WHERE signature_valid AND processed_at IS NULL AND received_at < %s",
        WebhookEvent,
    ),
    "payments paid at the gateway, not here": (
        "SELECT count(*) FROM {} c JOIN {} p ON p.gateway = 'sandbox' AND p.gateway_reference = c.reference"
        " WHERE c.status = 'succeeded' AND c.updated_at < %s AND p.status <> 'succeeded'",
        SandboxCharge,
        Payment,
    ),
    "boxes of paid invoices still building": (
        "SELECT count(*) FROM {} t JOIN {} i ON i.id = t.invoice_id"
        " WHERE t.status = 'building' AND i.paid_at < %s",
        Toybox,
        Invoice,
    ),
}


def queue_depths() -> list[tuple[str, int, int, int]]:
    """(queue, ready, unacknowledged, consumers) of the queues holding messages on the test vhost."""
    columns = ("messages_ready", "messages_unacknowledged", "consumers")
    return [
        (q["name"], *(q[column] for column in columns))
        for q in rabbitmq_queues(*columns)
        if q["messages_ready"] or q["messages_unacknowledged"]
    ]


def waiting_since(db: psycopg.Connection, moment) -> dict[str, int]:
    """Events, webhooks, paid charges and paid invoices' boxes from before `moment` still waiting."""
    counts = {}
    for what, (query, *models) in WAITING.items():
        statement = sql.SQL(query).format(*(sql.Identifier(m._meta.db_table) for m in models))
        counts[what] = db.execute(statement, [moment]).fetchone()[0]
    return counts


class Backlog(threading.Thread):
    """Counts the webhooks waiting to be processed every second, on a connection of its own;
    `full()` while more than `limit` wait.

    The customers hold off while it is full: on a machine slower than the load (a shared host
    at a bad moment runs the Celery no-op at half its usual rate) the work would otherwise pile
    up before any fault, and the minute after the broker's return would measure that pile, not
    the recovery. The limit is below what a 30 s outage stores at the test's rate (about 160):
    on a machine that keeps up it holds no one before the outage and only its last few seconds,
    while on a slow one what waits at the broker's return stays what a minute can drain (at
    710 no-ops/s, 167 waiting drained in 45 s with a limit of 150). `held` says how long the
    customers were held.
    """

    def __init__(self, limit: int):
        super().__init__(name="backlog", daemon=True)
        self.limit, self.waiting, self.held = limit, 0, 0.0
        self._finished = threading.Event()

    def run(self) -> None:
        query = sql.SQL("SELECT count(*) FROM {} WHERE signature_valid AND processed_at IS NULL").format(
            sql.Identifier(WebhookEvent._meta.db_table)
        )
        with harness_connection() as db:
            while not self._finished.wait(1.0):
                self.waiting = db.execute(query).fetchone()[0]
                if self.full():
                    self.held += 1.0

    def full(self) -> bool:
        return self.waiting > self.limit

    def stop(self) -> None:
        self._finished.set()
        self.join(timeout=10)


class Workers:
    """Real prefork workers consuming every queue, killed one at a time and replaced."""

    def __init__(self, start: Callable, *, count: int, concurrency: int):
        self._start = lambda: start(",".join(QUEUE_NAMES), concurrency)
        self.count = count
        self.running = [self._start() for _ in range(count)]
        self.killed = 0

    def kill_one(self) -> str:
        """SIGKILL the oldest worker and its pool children."""
        worker = self.running.pop(0)
        worker.kill()
        self.killed += 1
        return worker.name

    def top_up(self, tries: int = 3) -> None:
        """Start replacements until `count` run (the broker must answer their ping)."""
        while len(self.running) < self.count:
            try:
                self.running.append(self._start())
            except Exception:
                # The ping went on a connection pooled before an outage, which the broker closed:
                # the failure drops it, and the next try connects anew.
                tries -= 1
                if not tries:
                    raise
                time.sleep(1)


class Chaos(threading.Thread):
    """Injects PLAN's faults as the flows progress (`progress()`: the share bought, 0 to 1)."""

    def __init__(self, workers: Workers, progress: Callable[[], float]):
        super().__init__(name="chaos", daemon=True)
        self.workers, self.progress = workers, progress
        self.began = time.monotonic()
        self.log: list[str] = []
        self.failures: list[str] = []
        self.recovery: dict[str, float | None] = {}
        self.terminations = 0
        self.bought = threading.Event()  # set once every flow is bought: what is left of PLAN runs at once
        self._db: psycopg.Connection | None = None

    def note(self, text: str) -> None:
        self.log.append(f"{time.monotonic() - self.began:6.1f}s {text}")

    def run(self) -> None:
        try:
            self._db = harness_connection()
            for share, fault in PLAN:
                while self.progress() < share and not self.bought.is_set():
                    time.sleep(0.2)
                getattr(self, fault)()
        except BaseException as exc:  # noqa: BLE001 - pytest.fail too: reported by the test, which fails on it
            self.failures.append(f"the fault injection itself failed: {type(exc).__name__}: {exc}")
        finally:
            if self._db is not None:
                self._db.close()

    def postgres(self) -> None:
        killed = backends_terminate(self._db)
        self.terminations += killed
        self.note(f"postgres: terminated {killed} backends")

    def worker(self, replace: bool = True) -> None:
        self.note(f"worker: SIGKILL {self.workers.kill_one()}")
        if replace:
            self.workers.top_up()
            self.note("worker: replacement answers ping")

    def outage(self) -> None:
        with broker_outage():
            began = time.monotonic()
            self.note("rabbitmq: refusing every connection")
            time.sleep(8)
            self.postgres()
            time.sleep(7)
            self.worker(replace=False)  # its replacement could not reach the broker: after it is back
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - began)))
        back = self._db.execute("SELECT now()").fetchone()[0]
        returned = time.monotonic()
        self.note(f"rabbitmq: back after {returned - began:.0f}s")
        self.workers.top_up()
        self.note("worker: replacement answers ping")
        self._measure_recovery(back, returned)

    def _measure_recovery(self, back, returned: float) -> None:
        """Seconds from the broker's return until each kind of waiting work was done (None: not
        within RECOVERY_PATIENCE)."""
        self.recovery = dict.fromkeys(waiting_since(self._db, back))
        series, next_sample = [], returned
        while time.monotonic() - returned < RECOVERY_PATIENCE:
            waiting = waiting_since(self._db, back)
            if time.monotonic() >= next_sample:  # how it drained: (s after the return, counts)
                series.append((round(time.monotonic() - returned), *waiting.values()))
                next_sample += 5
            for what, count in waiting.items():
                if count == 0 and self.recovery[what] is None:
                    self.recovery[what] = round(time.monotonic() - returned, 1)
            if all(seconds is not None for seconds in self.recovery.values()):
                break
            time.sleep(1)
        self.note(f"recovery: {self.recovery}")
        self.note(f"  waiting every 5 s after the return (s, {', '.join(WAITING)}): {series}")
        if None in self.recovery.values():
            for line in self._late(back):
                self.note(f"  late: {line}")

    def _late(self, back) -> list[str]:
        """Where the work the broker's return left still waits: a few of the payments paid at the
        gateway and not here, with their webhooks, and the queues holding messages."""
        payment, charge, webhook = (
            sql.Identifier(m._meta.db_table) for m in (Payment, SandboxCharge, WebhookEvent)
        )
        rows = self._db.execute(
            sql.SQL(
                "SELECT p.gateway_reference, p.status, now() - p.updated_at,"
                " (SELECT json_agg(json_build_object('claimed', w.claimed_status, 'checks', w.checks,"
                "  'received_s_ago', extract(epoch FROM now() - w.received_at)::int,"
                "  'dispatched_s_ago', extract(epoch FROM now() - w.dispatched_at)::int,"
                "  'processed_s_ago', extract(epoch FROM now() - w.processed_at)::int,"
                "  'error', left(w.error, 120)))"
                "  FROM {} w WHERE w.reference = p.gateway_reference)"
                " FROM {} c JOIN {} p ON p.gateway = 'sandbox' AND p.gateway_reference = c.reference"
                " WHERE c.status = 'succeeded' AND c.updated_at < %s AND p.status <> 'succeeded' LIMIT 5"
            ).format(webhook, charge, payment),
            [back],
        ).fetchall()
        return [
            f"{ref} {status} (updated {age} ago) webhooks {hooks}" for ref, status, age, hooks in rows
        ] + [f"queues: {queue_depths()}"]
