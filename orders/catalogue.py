"""Catalogue reads served from the cache, and the one place that says the catalogue changed.

Every cached catalogue answer is stored with the catalogue's generation, a counter in the
cache; an answer of an older generation is a miss. `catalogue_changed()` is called in the
transaction of every change to a category, product, variant or saleable stock: it publishes
`product.updated` and, once the change has committed, bumps the generation, so the next read
misses and sees the change. The
`product.updated` subscriber bumps it again: if the cache was down at the commit, its retries
invalidate once the cache is back. Entries also expire after CATALOGUE_CACHE_SECONDS.

The cache is an optimisation only: when it cannot be reached, reads go to the database.
"""

import hashlib
import logging
import secrets
from collections.abc import Callable, Iterable

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from rest_framework.response import Response

from core import events

logger = logging.getLogger(__name__)
GENERATION_KEY = "catalogue:generation"


def _generation_start() -> None:
    # Random, not 1: if only this key was evicted, answers cached under an old generation
    # must not come back to life.
    cache.add(GENERATION_KEY, secrets.randbits(62), timeout=None)


def cache_invalidate() -> None:
    """Make every cached catalogue answer stale (raises if the cache cannot be reached)."""
    try:
        cache.incr(GENERATION_KEY)
    except ValueError:  # no generation yet (a fresh or flushed cache)
        _generation_start()


def _invalidate_after_commit() -> None:
    try:
        cache_invalidate()
    except Exception:
        logger.warning("could not invalidate the catalogue cache; the subscriber will", exc_info=True)


def cached_response(request, name: str, compute: Callable[[], Response]) -> Response:
    """The cached answer to this request of the read API `name`, or `compute()` stored for next time.

    An entry is (generation, answer) under a key of the path and query string; the generation
    and the entry are read in one round trip, and an entry of an older generation is a miss.
    """
    if settings.CATALOGUE_CACHE_SECONDS <= 0:
        return compute()
    query = "&".join(sorted(f"{k}={v}" for k, values in request.GET.lists() for v in values))
    key = f"catalogue:{name}:{hashlib.sha256(f'{request.path}?{query}'.encode()).hexdigest()[:32]}"
    try:
        found = cache.get_many([GENERATION_KEY, key])
        generation = found.get(GENERATION_KEY)
        if generation is None:
            _generation_start()
            generation = cache.get(GENERATION_KEY)
    except Exception:
        logger.warning("catalogue cache unavailable; reading from the database", exc_info=True)
        return compute()
    entry = found.get(key)
    if entry is not None and entry[0] == generation:
        return Response(entry[1], headers={"X-Cache": "hit"})
    response = compute()
    if response.status_code == 200:
        try:
            cache.set(key, (generation, response.data), timeout=settings.CATALOGUE_CACHE_SECONDS)
        except Exception:
            logger.warning("could not store a catalogue answer in the cache", exc_info=True)
    response["X-Cache"] = "miss"
    return response


def catalogue_changed(
    *, product_ids: Iterable[int] = (), category_id: int | None = None, reason: str
) -> None:
    """Record, in the caller's transaction, that products (or a category) changed.

    Publishes one `product.updated` per product (or one for the category) and invalidates the
    cache after the commit, once per transaction.
    """
    from orders.models import Category, Product

    products = Product.objects.filter(pk__in=set(product_ids)).values("pk", "slug", "category_id")
    for product in products.order_by("pk"):
        events.publish(
            "product.updated",
            {
                "product_id": product["pk"],
                "slug": product["slug"],
                "category_id": product["category_id"],
                "reason": reason,
            },
        )
    if category_id is not None:
        category = Category.objects.filter(pk=category_id).values("slug").first()
        events.publish(
            "product.updated",
            {
                "product_id": None,
                "slug": None,
                "category_id": category_id,
                "category_slug": category["slug"] if category else None,
                "reason": reason,
            },
            aggregate_id=f"category:{category_id}",
        )
    connection = transaction.get_connection()
    if not any(func is _invalidate_after_commit for _, func, _ in connection.run_on_commit):
        transaction.on_commit(_invalidate_after_commit)
