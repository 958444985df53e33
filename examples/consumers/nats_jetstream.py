"""Consume Fulfil's events from NATS JetStream with a durable pull consumer, once per event id.

    python examples/consumers/nats_jetstream.py --url nats://127.0.0.1:4222 \\
        --stream FULFIL_EVENTS --subject 'fulfil.events.payment.>' --durable billing

Each message's subject is `<prefix>.<event type>`, its payload the JSON envelope and its
`Nats-Msg-Id` header the event id. JetStream drops a re-published id within the stream's
duplicate window, so a duplicate reaches you only if the relay re-sent it later than that,
or if you did not ack in time (AckWait) and it was redelivered: the handler still skips ids
it has done (here in memory; in a real service, a unique row written in the same database
transaction as the effect) and acks only after the effect. Prints one JSON line per event.
"""

import argparse
import asyncio
import json
import sys
import time

import nats
from nats.errors import TimeoutError as FetchTimeout


async def consume(args: argparse.Namespace) -> int:
    nc = await nats.connect(args.url, connect_timeout=5)
    try:
        js = nc.jetstream(timeout=10)
        subscription = await js.pull_subscribe(args.subject, durable=args.durable, stream=args.stream)
        done: set[str] = set()
        handled, deadline = 0, time.monotonic() + args.timeout if args.timeout else None
        while args.count is None or handled < args.count:
            if deadline and time.monotonic() > deadline:
                print(f"timed out after {handled} events", file=sys.stderr)
                return 1
            try:
                messages = await subscription.fetch(batch=100, timeout=1)
            except FetchTimeout:
                continue
            for msg in messages:
                event_id = (msg.headers or {}).get("Nats-Msg-Id")
                if event_id not in done:
                    envelope = json.loads(msg.data)
                    print(
                        json.dumps({"id": envelope["id"], "type": envelope["type"], "subject": msg.subject})
                    )
                    sys.stdout.flush()
                    done.add(event_id)
                    handled += 1
                await msg.ack()
        return 0
    finally:
        await nc.close()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="nats://127.0.0.1:4222")
    parser.add_argument("--stream", default="FULFIL_EVENTS")
    parser.add_argument("--subject", default="fulfil.events.>", help="filter: which events to receive")
    parser.add_argument("--durable", default="example", help="the consumer's name: it resumes where it acked")
    parser.add_argument("--count", type=int, help="stop after handling this many events")
    parser.add_argument("--timeout", type=float, help="give up (exit 1) after this many seconds")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(consume(parse_args())))
