"""Flower's configuration (Flower reads ./flowerconfig.py): basic auth from the environment.

Every global name that is one of Flower's options sets it (flower/options.py).
"""

import os

if not os.environ.get("FLOWER_BASIC_AUTH"):
    raise SystemExit("FLOWER_BASIC_AUTH=user:password is required: Flower never runs unauthenticated.")

basic_auth = os.environ["FLOWER_BASIC_AUTH"].split(",")
port = int(os.environ.get("FLOWER_PORT", "5555"))
address = os.environ.get("FLOWER_ADDRESS", "127.0.0.1")
# Queue lengths come from RabbitMQ's management API when it is configured.
if os.environ.get("RABBITMQ_MANAGEMENT_URL"):
    broker_api = os.environ["RABBITMQ_MANAGEMENT_URL"]

# The tasks and workers Flower has seen survive its restarts: saved to FLOWER_DB (shelve
# files, kept in a volume under compose) every minute and at shutdown, and read at start.
persistent = True
db = os.environ.get("FLOWER_DB") or os.path.join(os.path.dirname(__file__), "var", "flower.db")
os.makedirs(os.path.dirname(os.path.abspath(db)), exist_ok=True)
state_save_interval = 60_000  # milliseconds
# At most this many tasks in memory and in the file (Flower's default, 100,000, costs
# hundreds of MB and makes every save slow).
max_tasks = int(os.environ.get("FLOWER_MAX_TASKS", "10000"))
# A worker offline for an hour (a replaced container comes back under a new name) leaves the
# dashboard and Flower's /metrics, so that flower_worker_online counts live workers only.
purge_offline_workers = 3600
