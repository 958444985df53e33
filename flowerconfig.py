"""Flower's configuration (Flower reads ./flowerconfig.py): basic auth from the environment."""

import os

if not os.environ.get("FLOWER_BASIC_AUTH"):
    raise SystemExit("FLOWER_BASIC_AUTH=user:password is required: Flower never runs unauthenticated.")

basic_auth = os.environ["FLOWER_BASIC_AUTH"].split(",")
port = int(os.environ.get("FLOWER_PORT", "5555"))
address = os.environ.get("FLOWER_ADDRESS", "127.0.0.1")
# Queue lengths come from RabbitMQ's management API when it is configured.
if os.environ.get("RABBITMQ_MANAGEMENT_URL"):
    broker_api = os.environ["RABBITMQ_MANAGEMENT_URL"]
