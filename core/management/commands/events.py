"""manage.py events replay|tail|relay|asyncapi: the event backbone from the command line."""

import json
import uuid

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from kombu import Connection, Consumer, Queue

from core.events.asyncapi import asyncapi_document
from core.events.delivery import sink_lag, sink_run, sinks
from core.events.maintenance import ReplayError, dead_letter_replay
from core.events.relay import outbox_lag_seconds, relay_run
from core.events.sinks import events_exchange
from core.models import DeadLetter
from core.progress import progress


class Command(BaseCommand):
    help = "Replay dead letters, watch live events, run the relay once, or write the AsyncAPI document."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        replay = sub.add_parser("replay", help="send dead-lettered events to their subscribers again")
        which = replay.add_mutually_exclusive_group(required=True)
        which.add_argument("--id", type=int, action="append", dest="ids", help="dead letter id (repeatable)")
        which.add_argument("--all", action="store_true", help="every unresolved dead letter")
        tail = sub.add_parser("tail", help="print live events from the exchange, one JSON line each")
        tail.add_argument("pattern", nargs="*", default=["#"], help="routing patterns, e.g. 'payment.#'")
        tail.add_argument("--limit", type=int, default=0, help="stop after this many events")
        tail.add_argument("--timeout", type=float, default=0, help="stop after this many idle seconds")
        sub.add_parser(
            "relay", help="publish what is waiting in the outbox, deliver to the other buses, and report"
        )
        asyncapi = sub.add_parser("asyncapi", help="write the events' AsyncAPI 3.0.0 document (JSON)")
        asyncapi.add_argument("--output", "-o", help="file to write (default: standard output)")

    def handle(self, *args, action: str, **options):
        getattr(self, f"handle_{action}")(**options)

    def handle_replay(self, *, ids=None, all=False, **options):
        letters = DeadLetter.objects.filter(resolved_at__isnull=True)
        if not all:
            letters = letters.filter(pk__in=ids)
            missing = set(ids) - set(letters.values_list("pk", flat=True))
            if missing:
                raise CommandError(f"no unresolved dead letter with id {sorted(missing)}")
        count = 0
        bar = progress(list(letters.values_list("pk", flat=True)), label="dead letters", stream=self.stdout)
        for pk in bar:
            try:
                letter = dead_letter_replay(dead_letter_id=pk)
            except ReplayError as exc:
                bar.write(f"#{pk}: {exc}", stream=self.stderr)
                continue
            count += 1
            bar.write(f"#{pk}: {letter.event_type} {letter.event_id} -> {letter.subscriber} queued")
        self.stdout.write(f"{count} dead letters replayed; each resolves when its subscriber succeeds")

    def handle_tail(self, *, pattern, limit, timeout, **options):
        seen = 0
        queue_name = f"events.tail.{uuid.uuid4().hex[:8]}"
        exchange = events_exchange()
        bindings = [
            Queue(queue_name, exchange, routing_key=p, exclusive=True, auto_delete=True) for p in pattern
        ]

        def show(body, message):
            nonlocal seen
            message.ack()
            envelope = body if isinstance(body, dict) else json.loads(body)
            self.stdout.write(json.dumps(envelope, separators=(",", ":")))
            self.stdout.flush()
            seen += 1

        url = settings.EVENTS_BROKER_URL or settings.CELERY_BROKER_URL
        if url.startswith("filesystem"):
            # kombu's filesystem transport keeps every binding forever: a tail would leave a
            # queue behind that every later event is written to.
            raise CommandError("events tail needs RabbitMQ; the embedded broker cannot remove its queue")
        with Connection(url, transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS) as conn:
            channel = conn.channel()
            exchange(channel).declare()
            queue = bindings[0](channel)
            queue.declare()
            for extra in bindings[1:]:
                queue.bind_to(exchange, routing_key=extra.routing_key)
            self.stderr.write(
                f"listening on {settings.EVENTS_EXCHANGE} for {', '.join(pattern)} (Ctrl-C stops)"
            )
            with Consumer(channel, queues=[queue], callbacks=[show], accept=["json"]):
                while not limit or seen < limit:
                    try:
                        conn.drain_events(timeout=timeout or None)
                    except TimeoutError:
                        break
                    except KeyboardInterrupt:
                        break

    def handle_relay(self, **options):
        result = relay_run(force=True)
        self.stdout.write(
            f"published {result.published} events in {result.batches} batches"
            + ("; the broker failed, see the outbox rows' last_error" if result.failed else "")
            + f"; oldest unpublished now {outbox_lag_seconds():.1f}s old"
        )
        for name in sinks():  # then each other bus (EVENTS_SINKS)
            delivered, _ = sink_run(name, force=True)
            waiting, age = sink_lag()[name]
            self.stdout.write(f"{name}: delivered {delivered}; {waiting} waiting, oldest {age:.1f}s old")

    def handle_asyncapi(self, *, output=None, **options):
        text = json.dumps(asyncapi_document(), indent=2, ensure_ascii=False) + "\n"
        if not output:
            self.stdout.write(text, ending="")
            return
        with open(output, "w", encoding="utf-8") as file:
            file.write(text)
        self.stderr.write(f"wrote {output}")
