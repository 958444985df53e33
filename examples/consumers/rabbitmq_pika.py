"""Consume Fulfil's events from RabbitMQ with pika, once per event id.

    python examples/consumers/rabbitmq_pika.py --url amqp://guest:guest@127.0.0.1:5672/%2F \\
        --queue billing.events --bind 'payment.*' --bind 'order.paid'

The relay publishes each envelope (JSON, persistent) to the durable topic exchange `events`
with the event type as routing key, the event id as message_id and the headers event_type,
event_version and request_id. This declares your own durable queue, binds it to the patterns
you want, and acks each message only after its effect, so a crash redelivers it. The relay
may re-publish events the broker had taken (it re-sends a batch that was not fully
confirmed), so the handler skips ids it has done (here in memory; in a real service, a
unique row written in the same database transaction as the effect). Prints one JSON line
per event handled.
"""

import argparse
import json
import sys
import time

import pika


def main() -> int:
    args = parse_args()
    params = pika.URLParameters(args.url)
    params.socket_timeout = params.blocked_connection_timeout = 10
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.exchange_declare(args.exchange, exchange_type="topic", durable=True, passive=True)
    channel.queue_declare(args.queue, durable=True)
    for pattern in args.bind or ["#"]:
        channel.queue_bind(args.queue, args.exchange, routing_key=pattern)
    channel.basic_qos(prefetch_count=100)
    done: set[str] = set()
    handled, deadline = 0, time.monotonic() + args.timeout if args.timeout else None
    try:
        for method, properties, body in channel.consume(args.queue, inactivity_timeout=1):
            if args.count is not None and handled >= args.count:
                break
            if deadline and time.monotonic() > deadline:
                print(f"timed out after {handled} events", file=sys.stderr)
                return 1
            if method is None:
                continue  # nothing for a second: check the deadline again
            if properties.message_id not in done:
                envelope = json.loads(body)
                print(
                    json.dumps(
                        {"id": envelope["id"], "type": envelope["type"], "routing_key": method.routing_key}
                    )
                )
                sys.stdout.flush()
                done.add(properties.message_id)
                handled += 1
            channel.basic_ack(method.delivery_tag)
            if args.count is not None and handled >= args.count:
                break
        return 0
    finally:
        connection.close()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    parser.add_argument("--exchange", default="fulfil.events")
    parser.add_argument("--queue", required=True, help="your durable queue")
    parser.add_argument("--bind", action="append", help="a routing pattern (repeat; default #, every event)")
    parser.add_argument("--count", type=int, help="stop after handling this many events")
    parser.add_argument("--timeout", type=float, help="give up (exit 1) after this many seconds")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(main())
