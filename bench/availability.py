"""Availability latency: a 30-day query for one resource, as the bookings table grows.

    .venv/bin/python bench/availability.py --totals 1000,10000,100000 --queries 200

What runs: config.settings.bench (the local PostgreSQL, a database of its own,
`fulfil_bench` or BENCH_DATABASE_URL, created and migrated if missing). No worker: the
query is synchronous.

Data, for each total N (the bookings table is emptied and refilled each time):
  - one target hall (Europe/Berlin, open 08:00-22:00 every day) with 6 confirmed one-hour
    bookings on each of the 30 days of the window (180 in the window), and, outside it, a
    fifth of N spread back over the past years, one after another;
  - the rest of N on 20 other halls; statuses mostly confirmed, some completed, cancelled
    or expired. So the window always holds the same 180 bookings while the table grows.
Measured, per N, after ANALYZE and 20 warm-up queries:
  - query: bookings.selectors.busy_intervals() alone, the one query that reads bookings
    (what could grow with N);
  - selector: bookings.selectors.availability_for() for the 30-day window (resource
    already loaded): 3 queries (weekly hours, exceptions, bookings in the window) and the
    pure computation, per call, --queries times; also its CPU time (time.process_time),
    which the other processes of a shared machine disturb less than wall time;
  - api: GET /api/bookings/availability through Django's test client, anonymous (the
    middleware, DRF's dispatch and rate limit, query validation, the resource lookup, the
    selector, JSON rendering of 30 days of local times); also its CPU time;
  - plan: EXPLAIN (ANALYZE, BUFFERS) of the bookings-in-the-window query, to show the
    index used, the rows it reads and the buffers it touches.
Latency is wall time per call (time.perf_counter), p50 and p99 over the calls.
Target (issue): p99 under 20 ms, flat in N.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.bench")
os.environ["DJANGO_READ_DOT_ENV"] = "0"

WINDOW_DAYS = 30
PER_DAY_IN_WINDOW = 6
OTHER_HALLS = 20


def log(message: str) -> None:
    print(f"[availability] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def setup_halls():
    from accounts.models import User
    from bookings.models import OpeningHours, Resource

    customer = User.objects.filter(
        email="bench-availability@example.com"
    ).first() or User.objects.create_user(email="bench-availability@example.com")
    halls = []
    for n in range(OTHER_HALLS + 1):
        hall, created = Resource.objects.get_or_create(
            slug=f"bench-hall-{n}",
            defaults={
                "name": f"Bench hall {n}",
                "timezone": "Europe/Berlin",
                "currency": "EUR",
                "price_per_hour": "40.00",
            },
        )
        if created:
            OpeningHours.objects.bulk_create(
                OpeningHours(resource=hall, weekday=d, opens=dtime(8), closes=dtime(22)) for d in range(7)
            )
        halls.append(hall)
    return customer, halls[0], halls[1:]


def seed(total: int, *, customer, target, others, window_start: datetime) -> int:
    """Empty the bookings table and fill it with `total` bookings (see the module docstring)."""
    from django.db import connection

    from bookings.models import Booking

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE bookings_bookingaudit, bookings_booking RESTART IDENTITY CASCADE")

    statuses = ["confirmed"] * 6 + ["completed", "cancelled", "expired"]
    rows: list[Booking] = []

    def add(resource, start: datetime, status: str = "confirmed") -> None:
        rows.append(
            Booking(
                resource=resource, customer=customer, starts_at=start, ends_at=start + timedelta(hours=1),
                status=status, payment_status="deposit_paid", payment_kind="deposit",
                amount_total=40, amount_due=12, currency="EUR",
            )
        )  # fmt: skip

    for day in range(WINDOW_DAYS):
        for slot in range(PER_DAY_IN_WINDOW):
            add(target, window_start + timedelta(days=day, hours=1 + 2 * slot))
    in_window = len(rows)
    target_outside = max(0, total // 5 - in_window)
    for n in range(target_outside):  # back in time from the window, hour after hour
        add(target, window_start - timedelta(hours=n + 1), statuses[n % len(statuses)])
    rest = total - len(rows)
    for n in range(rest):
        hall = others[n % len(others)]
        slot = n // len(others)
        add(hall, window_start - timedelta(days=365 * 2) + timedelta(hours=slot), statuses[n % len(statuses)])
    Booking.objects.bulk_create(rows, batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE bookings_booking")
    return in_window


def explain(target, start: datetime, end: datetime) -> str:
    from django.db import connection

    from bookings.selectors import busy_query

    sql, params = busy_query(resource_id=target.pk, start=start, end=end, now=datetime.now(UTC))
    with connection.cursor() as cursor:  # the very query busy_intervals() runs
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY OFF) {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def measure(total: int, queries: int, *, customer, target, others) -> dict:
    from django.test import Client

    from bookings.availability import local_to_utc
    from bookings.selectors import availability_for, busy_intervals

    today = datetime.now(UTC).astimezone(target.tz).date()
    start_date = today + timedelta(days=1)
    end_date = start_date + timedelta(days=WINDOW_DAYS - 1)
    window_start = local_to_utc(start_date, 8 * 60, target.tz)
    t0 = time.perf_counter()
    in_window = seed(total, customer=customer, target=target, others=others, window_start=window_start)
    log(f"{total:,} bookings seeded in {time.perf_counter() - t0:.1f} s ({in_window} in the window)")

    window = (local_to_utc(start_date, 0, target.tz), local_to_utc(end_date, 24 * 60, target.tz))

    def query() -> int:
        return len(
            busy_intervals(resource_id=target.pk, start=window[0], end=window[1], now=datetime.now(UTC))
        )

    def selector() -> int:
        result = availability_for(resource=target, start_date=start_date, end_date=end_date)
        return sum(len(day.starts) for day in result.days)

    client = Client()
    url = f"/api/bookings/availability?hall_id={target.pk}&start_date={start_date}&end_date={end_date}"

    def api() -> int:
        response = client.get(url)
        assert response.status_code == 200, response.content[:500]
        return len(response.content)

    figures: dict = {"total": total, "in_window": in_window}
    for name, call in (("query", query), ("selector", selector), ("api", api)):
        for _ in range(20):
            call()
        timings, cpu = [], []
        for _ in range(queries):
            t, c = time.perf_counter(), time.process_time()
            call()
            timings.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
        figures[name] = {
            "p50_ms": round(statistics.median(timings), 2),
            "p99_ms": round(percentile(timings, 99), 2),
            "max_ms": round(max(timings), 2),
            "cpu_p50_ms": round(statistics.median(cpu), 2),
        }
    figures["starts"] = selector()
    plan = explain(target, *window)
    figures["plan"] = plan
    index_rows = re.search(r"Index Scan (?:on|using) booking_no_overlap .*?actual rows=(\d+)", plan)
    figures["index_used"] = index_rows is not None
    figures["index_rows"] = int(index_rows.group(1)) if index_rows else None
    figures["buffers"] = int(re.search(r"Buffers: shared hit=(\d+)", plan).group(1))
    query_ms, selector_ms, api_ms = figures["query"], figures["selector"], figures["api"]
    log(
        f"N={total:,}: query p50 {query_ms['p50_ms']} p99 {query_ms['p99_ms']} ms; "
        f"selector p50 {selector_ms['p50_ms']} p99 {selector_ms['p99_ms']} ms "
        f"(cpu p50 {selector_ms['cpu_p50_ms']}); "
        f"api p50 {api_ms['p50_ms']} p99 {api_ms['p99_ms']} ms (cpu p50 {api_ms['cpu_p50_ms']}); "
        f"index {figures['index_used']}, {figures['index_rows']} rows, {figures['buffers']} buffers"
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--totals", default="1000,10000,100000", help="bookings in the table, comma-separated"
    )
    parser.add_argument("--queries", type=int, default=200, help="measured queries per total and kind")
    parser.add_argument("--show-plans", action="store_true", help="print each EXPLAIN to stderr")
    args = parser.parse_args(argv)
    totals = [int(t) for t in args.totals.split(",")]

    import django

    django.setup()
    from bench.events import ensure_database

    ensure_database()
    customer, target, others = setup_halls()
    results = []
    try:
        for total in totals:
            figures = measure(total, args.queries, customer=customer, target=target, others=others)
            if args.show_plans:
                log(f"plan at N={total:,}:\n{figures['plan']}")
            results.append(figures)
    finally:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE bookings_bookingaudit, bookings_booking RESTART IDENTITY CASCADE")

    def row(figures: dict) -> str:
        q, s, a = figures["query"], figures["selector"], figures["api"]
        return (
            f"{figures['total']:,}: query {q['p50_ms']}/{q['p99_ms']}, selector {s['p50_ms']}/{s['p99_ms']}, "
            f"api {a['p50_ms']}/{a['p99_ms']} ms (p50/p99)"
        )

    growth = results[-1]["selector"]["p99_ms"] / results[0]["selector"]["p99_ms"]
    print(
        f"availability (30 days, {results[0]['in_window']} bookings in the window): "
        + "; ".join(row(f) for f in results)
        + f"; selector p99 x{growth:.2f} from {totals[0]:,} to {totals[-1]:,} bookings"
    )
    summary = {
        "bench": "availability",
        "window_days": WINDOW_DAYS,
        "queries": args.queries,
        "results": [{k: v for k, v in f.items() if k != "plan"} for f in results],
        "selector_p99_growth": round(growth, 2),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
