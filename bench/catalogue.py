"""Catalogue reads: product-list requests/second under gunicorn with the cache, and without.

    .venv/bin/python bench/catalogue.py --requests 3000

Two gunicorn servers run side by side with production's web command (sync workers, 4), the
same settings (config.settings.bench: the local PostgreSQL, Redis and RabbitMQ, the database
`fulfil_bench`, created and migrated if missing) except one: CATALOGUE_CACHE_SECONDS is 300 for
the cached server and 0 (every read from PostgreSQL) for the other. Only one is loaded at a
time; they alternate, --rounds times each, after a warm-up round of each (which also fills
the cache). The load generator and CPU accounting are bench/webhooks.py's (raw sockets from
--clients processes, one connection each; the clock runs from the start signal to the last
answer; only 2xx count).

The catalogue: 10 categories of 20 products, each with 3 variants and 2 images, made once
(slugs `bench-...`). The requests cycle through 11 product-list queries (GET /api/products?
limit=20, and the same filtered by each category), all anonymous, each answered by a page of
20 products with their variants and images, as a shop's front page and category pages ask.
Nothing changes the catalogue during a measurement, so the cached server answers from Redis
after its warm-up: what is measured is the cost of a hit against the cost of the query.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.celery_baseline import hard_deadline  # noqa: E402
from bench.process import BenchError  # noqa: E402
from bench.webhooks import Gunicorn, measure  # noqa: E402  (also sets the bench settings)

CATEGORIES, PRODUCTS_PER_CATEGORY, VARIANTS, IMAGES = 10, 20, 3, 2


def log(message: str) -> None:
    print(f"[catalogue] {message}", file=sys.stderr, flush=True)


def ensure_catalogue() -> int:
    """The bench catalogue (made once); the number of its products."""
    from orders.models import Category, Product, ProductImage, Variant

    if (
        Product.objects.filter(slug__startswith="bench-product-").count()
        == CATEGORIES * PRODUCTS_PER_CATEGORY
    ):
        return CATEGORIES * PRODUCTS_PER_CATEGORY
    Product.objects.filter(slug__startswith="bench-product-").delete()
    for c in range(CATEGORIES):
        category, _ = Category.objects.get_or_create(slug=f"bench-cat-{c}", defaults={"name": f"Bench {c}"})
        for p in range(PRODUCTS_PER_CATEGORY):
            n = c * PRODUCTS_PER_CATEGORY + p
            product = Product.objects.create(
                category=category,
                name=f"Bench product {n:03d}",
                slug=f"bench-product-{n}",
                description="x" * 200,
            )
            Variant.objects.bulk_create(
                Variant(
                    product=product,
                    sku=f"BENCH-{n}-{v}",
                    name=f"Ages {v + 1}-{v + 3}",
                    price=Decimal("10.00") + v,
                    attributes={"age_range": f"{v + 1}-{v + 3}"},
                    stock_on_hand=100,
                )
                for v in range(VARIANTS)
            )
            ProductImage.objects.bulk_create(
                ProductImage(product=product, url=f"https://img.example.com/{n}/{i}.jpg", position=i)
                for i in range(IMAGES)
            )
    return CATEGORIES * PRODUCTS_PER_CATEGORY


def queries() -> list[str]:
    return ["/api/products?limit=20"] + [
        f"/api/products?limit=20&category=bench-cat-{c}" for c in range(CATEGORIES)
    ]


def batch(port: int, n: int) -> list[bytes]:
    paths = queries()
    head = f"HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n"
    return [f"GET {paths[i % len(paths)]} {head}".encode() for i in range(n)]


class CatalogueServer(Gunicorn):
    def __init__(self, *, cache_seconds: int, workers: int):
        super().__init__(workers=workers, worker_class="sync", threads=1)
        self.env["CATALOGUE_CACHE_SECONDS"] = str(cache_seconds)
        self.name = f"gunicorn (cache {cache_seconds} s)"


def run(args: argparse.Namespace) -> dict:
    import django

    django.setup()
    from django.core.cache import cache
    from django.db import connection

    from bench.events import ensure_database

    ensure_database()
    products = ensure_catalogue()
    connection.close()
    servers = {
        "cached": CatalogueServer(cache_seconds=300, workers=args.workers),
        "uncached": CatalogueServer(cache_seconds=0, workers=args.workers),
    }
    results: list[dict] = []
    try:
        for server in servers.values():
            server.start()
        for server in servers.values():
            server.wait_ready(args.ready_timeout)
        from orders.catalogue import cache_invalidate

        cache_invalidate()  # nothing cached by an earlier run counts
        plan = [(kind, "warmup", args.warmup) for kind in servers]
        plan += [(kind, str(r), args.requests) for r in range(1, args.rounds + 1) for kind in servers]
        for kind, label, n in plan:
            server = servers[kind]
            result = measure(
                batch(server.port, n),
                port=server.port,
                clients=args.clients,
                server=server,
                timeout=args.timeout,
            )
            result |= {"kind": kind, "round": label}
            results.append(result)
            log(
                f"{kind:8} {label:6}: {result['accepted']}/{n} in {result['seconds']:.2f} s = "
                f"{result['per_s']:,.0f}/s; non-2xx {result['non_2xx'] or 0}; CPU ms/request: "
                + ", ".join(f"{k} {v:.2f}" for k, v in result["cpu_ms_per_request"].items())
            )
    finally:
        for server in servers.values():
            server.stop()
            server.remove_log()
        cache.close()
    rounds = [r for r in results if r["round"] != "warmup"]

    def rate(kind: str) -> float:
        mine = [r for r in rounds if r["kind"] == kind]
        return sum(r["accepted"] for r in mine) / sum(r["seconds"] for r in mine)

    cached, uncached = rate("cached"), rate("uncached")
    return {
        "bench": "catalogue",
        "requests": args.requests,
        "products": products,
        "queries": len(queries()),
        "cached_per_s": round(cached, 1),
        "uncached_per_s": round(uncached, 1),
        "speedup": round(cached / uncached, 2),
        "errors": sum(sum(r["non_2xx"].values()) for r in rounds),
        "rounds": args.rounds,
        "clients": args.clients,
        "workers": args.workers,
        "per_round": [
            {k: r[k] for k in ("kind", "round", "accepted", "seconds", "per_s", "non_2xx")} for r in rounds
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per measurement (3000)")
    parser.add_argument("--rounds", type=int, default=2, help="cached/uncached pairs, alternated (2)")
    parser.add_argument("--warmup", type=int, default=200, help="requests of each kind first, not counted")
    parser.add_argument("--clients", type=int, default=4, help="client processes (4)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn --workers each (4, as the Procfile)")
    parser.add_argument("--timeout", type=float, default=300.0, help="per measurement, s (300)")
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="gunicorn start, s (60)")
    args = parser.parse_args(argv)

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    budget = 2 * args.ready_timeout + (2 * args.rounds + 2) * args.timeout + 300
    try:
        with hard_deadline(budget, "catalogue bench"):
            result = run(args)
    except (BenchError, OSError) as exc:
        log(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; gunicorn stopped")
        return 130
    print(
        f"catalogue: {result['cached_per_s']:,.0f} product-list requests/s cached against "
        f"{result['uncached_per_s']:,.0f}/s uncached = {result['speedup']:.2f} x "
        f"(gunicorn sync x{args.workers}, {args.clients} clients, {args.rounds} x {args.requests} of each; "
        f"{result['errors']} non-2xx)"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
