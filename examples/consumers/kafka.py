"""Consume Fulfil's events from Kafka in a consumer group, once per event id.

    python examples/consumers/kafka.py --bootstrap-servers 127.0.0.1:9092 \\
        --topic fulfil.events.payment --group billing

Each record's key is the event's aggregate id (so one aggregate's events are in one
partition, in order), its value the JSON envelope and its `event_id` header the event id.
Offsets are committed only after the effect, so a crash re-reads from the last commit, and
the relay may re-send events it had delivered: the handler skips ids it has done (here in
memory; in a real service, a unique row written in the same database transaction as the
effect). Prints one JSON line per event handled.
"""

import argparse
import json
import sys
import time

from confluent_kafka import Consumer, KafkaException


def main() -> int:
    args = parse_args()
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap_servers,
            "group.id": args.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe(args.topic)
    done: set[str] = set()
    handled, deadline = 0, time.monotonic() + args.timeout if args.timeout else None
    try:
        while args.count is None or handled < args.count:
            if deadline and time.monotonic() > deadline:
                print(f"timed out after {handled} events", file=sys.stderr)
                return 1
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            event_id = dict(msg.headers() or [])["event_id"].decode()
            if event_id not in done:
                envelope = json.loads(msg.value())
                key = msg.key().decode() if msg.key() else None
                print(json.dumps({"id": envelope["id"], "type": envelope["type"], "key": key}))
                sys.stdout.flush()
                done.add(event_id)
                handled += 1
            consumer.commit(message=msg, asynchronous=False)
        return 0
    finally:
        consumer.close()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--topic", action="append", required=True, help="a topic to read (repeat)")
    parser.add_argument("--group", default="example")
    parser.add_argument("--count", type=int, help="stop after handling this many events")
    parser.add_argument("--timeout", type=float, help="give up (exit 1) after this many seconds")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(main())
