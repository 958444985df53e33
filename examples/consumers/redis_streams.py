"""Consume Fulfil's events from Redis Streams with a consumer group, once per event id.

    python examples/consumers/redis_streams.py --url redis://127.0.0.1:6379/0 \\
        --stream fulfil.events.payment --stream fulfil.events.order --group billing

Each stream entry has the fields id, type, aggregate_id, request_id (if any) and envelope
(the JSON envelope). A consumer group (XREADGROUP) shares the entries among its consumers;
an entry stays pending until XACK, so a consumer that crashed re-reads its own pending
entries on restart (read from id 0) before taking new ones (id >). The relay may add an
event twice (it re-sends a batch the bus did not fully acknowledge), so the handler skips
event ids it has done: here a Redis key per id; in a real service, a unique row written in
the same database transaction as the effect. Prints one JSON line per event handled.
"""

import argparse
import json
import socket
import sys
import time

import redis

SEEN_TTL = 7 * 24 * 3600  # keep done ids far longer than any re-send can take


def main() -> int:
    args = parse_args()
    client = redis.Redis.from_url(
        args.url, socket_timeout=10, socket_connect_timeout=5, decode_responses=True
    )
    for stream in args.stream:
        try:
            client.xgroup_create(stream, args.group, id="0" if args.from_start else "$", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
    handled, deadline = 0, time.monotonic() + args.timeout if args.timeout else None
    pending_first = True  # our own unacknowledged entries (a previous run crashed) come first
    while args.count is None or handled < args.count:
        if deadline and time.monotonic() > deadline:
            print(f"timed out after {handled} events", file=sys.stderr)
            return 1
        start = "0" if pending_first else ">"
        replies = client.xreadgroup(
            args.group, args.consumer, dict.fromkeys(args.stream, start), count=100, block=1000
        )
        if pending_first and not any(entries for _, entries in replies):
            pending_first = False
        for stream, entries in replies:
            for entry_id, fields in entries:
                handled += handle(client, args.group, stream, entry_id, fields)
                client.xack(stream, args.group, entry_id)
    return 0


def handle(client: redis.Redis, group: str, stream: str, entry_id: str, fields: dict) -> int:
    """Do the event's effect unless its id was done already; 1 if done now."""
    done_key = f"{group}:done:{fields['id']}"
    if client.exists(done_key):
        return 0  # a duplicate: acknowledge it, do nothing
    envelope = json.loads(fields["envelope"])
    print(json.dumps({"id": envelope["id"], "type": envelope["type"], "stream": stream, "entry": entry_id}))
    sys.stdout.flush()
    client.set(done_key, 1, ex=SEEN_TTL)
    return 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--stream", action="append", required=True, help="a stream to read (repeat)")
    parser.add_argument("--group", default="example")
    parser.add_argument("--consumer", default=socket.gethostname())
    parser.add_argument("--from-start", action="store_true", help="a new group starts at the oldest entry")
    parser.add_argument("--count", type=int, help="stop after handling this many events")
    parser.add_argument("--timeout", type=float, help="give up (exit 1) after this many seconds")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(main())
