"""Reads on orders and the catalogue that are more than one line."""

from django.db.models import Count, Exists, Min, OuterRef, Prefetch, Q, QuerySet

from orders.models import Category, Order, Product, Variant


def orders_visible_to(user) -> QuerySet[Order]:
    """A customer's own orders; staff see all."""
    orders = Order.objects.select_related("payment", "customer").prefetch_related("lines")
    return orders if user.is_staff else orders.filter(customer=user)


def products_on_sale() -> QuerySet[Product]:
    """Active products in active categories with at least one active variant, with those variants."""
    active_variants = Variant.objects.filter(is_active=True).order_by("price", "pk")
    return (
        Product.objects.filter(is_active=True, category__is_active=True)
        .filter(Exists(Variant.objects.filter(product=OuterRef("pk"), is_active=True)))
        .annotate(
            min_price=Min("variants__price", filter=Q(variants__is_active=True)),
        )
        .select_related("category")
        .prefetch_related(Prefetch("variants", queryset=active_variants), "images")
    )


def categories_active() -> QuerySet[Category]:
    return Category.objects.filter(is_active=True).annotate(
        product_count=Count("products", filter=Q(products__is_active=True))
    )


def category_with_descendants(slug: str) -> list[int]:
    """The ids of the category `slug` and every category under it (empty if there is none)."""
    parents = dict(Category.objects.filter(is_active=True).values_list("pk", "parent_id"))
    root = Category.objects.filter(slug=slug, is_active=True).values_list("pk", flat=True).first()
    if root is None:
        return []
    found, frontier = {root}, {root}
    while frontier:
        frontier = {pk for pk, parent in parents.items() if parent in frontier and pk not in found}
        found |= frontier
    return sorted(found)
