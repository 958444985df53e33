"""The storefront API: a public catalogue (cached), the customer's cart, checkout and orders."""

import django_filters
from django.db.models import Exists, F, OuterRef, Prefetch
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import filters, status
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.drf import BooleanFilter, CurrencyFilter, FilterBackend, FilterSet, OrderingFilter
from core.idempotency import HEADER, idempotent
from orders import selectors, services
from orders.api import examples
from orders.api.serializers import (
    CartItemAddSerializer,
    CartItemSetSerializer,
    CartSerializer,
    CategorySerializer,
    CheckoutResultSerializer,
    CheckoutSerializer,
    OrderAuditSerializer,
    OrderCancelSerializer,
    OrderSerializer,
    ProductSerializer,
)
from orders.catalogue import cached_response
from orders.models import Cart, CartItem, Order, Variant
from payments import services as payments

IDEMPOTENCY = OpenApiParameter(HEADER, str, OpenApiParameter.HEADER, required=True)
# The 409s and 422s of the services behind each view (core.openapi adds the rest).
KEY_REUSED = "or the Idempotency-Key was used with another body (idempotency_key_reused)"
KEY_BUSY = OpenApiResponse(description="a request with this Idempotency-Key is still running")
CHECKOUT_ERRORS = {
    409: KEY_BUSY,
    422: OpenApiResponse(
        description="cart_empty, out_of_stock, not_on_sale, the gateway refused the checkout, " + KEY_REUSED
    ),
    503: OpenApiResponse(description="the gateway is unavailable; retry with the same key"),
}
CART_ERRORS = {422: OpenApiResponse(description="out_of_stock, not on sale, or too many of one variant")}


class CatalogueView:
    """Public, cached, and working without the cache when Redis is down (so do the rate limits)."""

    permission_classes = [AllowAny]
    cache_name = ""

    def get(self, request, *args, **kwargs):
        return cached_response(
            request, self.cache_name, lambda: super(CatalogueView, self).get(request, *args, **kwargs)
        )


class CategoryListView(CatalogueView, ListAPIView):
    """Active categories, parents before children (each names its parent's slug)."""

    serializer_class = CategorySerializer
    pagination_class = None
    cache_name = "categories"

    def get_queryset(self):
        return (
            selectors.categories_active().select_related("parent").order_by("parent_id", "position", "name")
        )


PRICE = {"max_digits": 14, "decimal_places": 3}  # what a price column holds


class ProductFilter(FilterSet):
    category = django_filters.CharFilter(
        method="filter_category", help_text="slug; includes its subcategories"
    )
    min_price = django_filters.NumberFilter(field_name="min_price", lookup_expr="gte", **PRICE)
    max_price = django_filters.NumberFilter(field_name="min_price", lookup_expr="lte", **PRICE)
    currency = CurrencyFilter(method="filter_currency")
    in_stock = BooleanFilter(method="filter_in_stock")

    def filter_category(self, queryset, name, value):
        return queryset.filter(category_id__in=selectors.category_with_descendants(value))

    def filter_currency(self, queryset, name, value):
        return queryset.filter(
            Exists(Variant.objects.filter(product=OuterRef("pk"), is_active=True, currency=value))
        )

    def filter_in_stock(self, queryset, name, value):
        available = Exists(
            Variant.objects.filter(
                product=OuterRef("pk"), is_active=True, stock_on_hand__gt=F("stock_reserved")
            )
        )
        return queryset.filter(available if value else ~available)


class ProductListView(CatalogueView, ListAPIView):
    """Products on sale, with their variants (price, attributes, stock available) and images."""

    serializer_class = ProductSerializer
    filterset_class = ProductFilter
    filter_backends = [FilterBackend, filters.SearchFilter, OrderingFilter]
    search_fields = ["name", "description", "variants__sku"]
    ordering_fields = ["name", "min_price", "created_at"]
    ordering = ["name"]
    cache_name = "products"

    def get_queryset(self):
        return selectors.products_on_sale()


class ProductDetailView(CatalogueView, RetrieveAPIView):
    serializer_class = ProductSerializer
    lookup_field = "slug"
    cache_name = "product"

    def get_queryset(self):
        return selectors.products_on_sale()


def _cart(user) -> Cart:
    cart, _ = Cart.objects.get_or_create(customer=user)
    items = CartItem.objects.select_related("variant__product")
    return Cart.objects.prefetch_related(Prefetch("items", queryset=items)).get(pk=cart.pk)


class CartView(APIView):
    @extend_schema(responses={200: CartSerializer})
    def get(self, request):
        return Response(CartSerializer(_cart(request.user)).data)


class CartItemsView(APIView):
    @extend_schema(request=CartItemAddSerializer, responses={201: CartSerializer, **CART_ERRORS})
    def post(self, request):
        """Add a variant to the cart (more of it, if it is there already)."""
        data = CartItemAddSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.cart_item_add(customer_id=request.user.pk, **data.validated_data)
        return Response(CartSerializer(_cart(request.user)).data, status=status.HTTP_201_CREATED)


class CartItemView(APIView):
    @extend_schema(request=CartItemSetSerializer, responses={200: CartSerializer, **CART_ERRORS})
    def patch(self, request, item_id: int):
        """Set the quantity of an item (0 removes it)."""
        data = CartItemSetSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.cart_item_set(customer_id=request.user.pk, item_id=item_id, **data.validated_data)
        return Response(CartSerializer(_cart(request.user)).data)

    @extend_schema(responses={200: CartSerializer})
    def delete(self, request, item_id: int):
        services.cart_item_set(customer_id=request.user.pk, item_id=item_id, quantity=0)
        return Response(CartSerializer(_cart(request.user)).data)


def _open_checkout(request, order_id: int, return_url: str) -> Response:
    """Open the checkout of the order's payment. A gateway refusal cancels that payment (the
    order records why, and /pay opens another one) and is answered 422."""
    order = Order.objects.get(pk=order_id)
    payments.payment_checkout_open(
        payment_id=order.payment_id,
        return_url=return_url,
        description=f"Order {order.number}",
        customer_email=request.user.email,
    )
    order = selectors.orders_visible_to(request.user).get(pk=order_id)
    return Response(CheckoutResultSerializer(order).data, status=status.HTTP_201_CREATED)


class CheckoutView(APIView):
    """Turn the cart into an order: stock held for the payment window, payment opened.

    Answers the order with the payment's `checkout_url`. A retry with the same Idempotency-Key
    gets the same order; after a 503 (gateway unavailable) it opens the same order's checkout.
    """

    @extend_schema(
        request=CheckoutSerializer,
        parameters=[IDEMPOTENCY],
        responses={201: CheckoutResultSerializer, **CHECKOUT_ERRORS},
        examples=examples.CHECKOUT,
    )
    def post(self, request):
        data = CheckoutSerializer(data=request.data)
        data.is_valid(raise_exception=True)

        def create_order(record) -> None:
            order = services.order_checkout(
                customer_id=request.user.pk, gateway=data.validated_data.get("gateway")
            )
            record.resource_id = str(order.pk)

        return idempotent(
            request,
            scope="orders.checkout",
            payload=request.data,
            prepare=create_order,
            handler=lambda record: _open_checkout(
                request, int(record.resource_id), data.validated_data["return_url"]
            ),
        )


class OrderFilter(FilterSet):
    currency = CurrencyFilter()

    class Meta:
        model = Order
        fields = ["status", "needs_attention", "currency"]


class OrderListView(ListAPIView):
    """Your orders, newest first (staff: everyone's)."""

    serializer_class = OrderSerializer
    filterset_class = OrderFilter
    ordering_fields = ["created_at", "total"]
    ordering = ["-created_at", "-pk"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Order.objects.none()
        return selectors.orders_visible_to(self.request.user)


class OrderLookup:
    """The order of the URL's `number` that the caller may see (a mixin: it answers no method).

    Each view says which method it answers, so an action answers only its own (others: 405).
    """

    def get_object(self) -> Order:
        return get_object_or_404(selectors.orders_visible_to(self.request.user), number=self.kwargs["number"])


class OrderDetailView(OrderLookup, APIView):
    @extend_schema(responses={200: OrderSerializer})
    def get(self, request, number: str):
        return Response(OrderSerializer(self.get_object()).data)


class OrderAuditView(OrderLookup, APIView):
    @extend_schema(responses={200: OrderAuditSerializer(many=True)})
    def get(self, request, number: str):
        return Response(OrderAuditSerializer(self.get_object().audit.all(), many=True).data)


class OrderCancelView(OrderLookup, APIView):
    """Cancel an unpaid order (its stock returns). A paid order is refunded by staff instead."""

    @extend_schema(
        request=OrderCancelSerializer,
        responses={
            200: OrderSerializer,
            409: OpenApiResponse(
                description="the order is paid, fulfilled, expired... (transition_not_allowed)"
            ),
            422: OpenApiResponse(description="its payment was received meanwhile (payment_received)"),
        },
    )
    def post(self, request, number: str):
        order = self.get_object()
        data = OrderCancelSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        actor = f"{'staff' if request.user.is_staff else 'customer'} {request.user.pk}"
        services.order_cancel(order_id=order.pk, actor=actor, reason=data.validated_data["reason"])
        return Response(OrderSerializer(self.get_object()).data)


class OrderPayView(APIView):
    """Pay an unpaid order again after a failed attempt (a new payment until the deadline)."""

    @extend_schema(
        request=CheckoutSerializer,
        parameters=[IDEMPOTENCY],
        responses={
            201: CheckoutResultSerializer,
            **CHECKOUT_ERRORS,
            422: OpenApiResponse(
                description="not_payable, payment_window_closed, the gateway refused the checkout, "
                + KEY_REUSED
            ),
        },
    )
    def post(self, request, number: str):
        order = get_object_or_404(Order.objects.filter(customer=request.user), number=number)
        data = CheckoutSerializer(data=request.data)
        data.is_valid(raise_exception=True)

        def renew(record) -> None:
            services.order_payment_renew(order_id=order.pk, gateway=data.validated_data.get("gateway"))
            record.resource_id = str(order.pk)

        return idempotent(
            request,
            scope=f"orders.pay.{order.pk}",
            payload=request.data,
            prepare=renew,
            handler=lambda record: _open_checkout(request, order.pk, data.validated_data["return_url"]),
        )


class OrderFulfilView(OrderLookup, APIView):
    """Staff: the order has shipped."""

    permission_classes = [IsAdminUser]

    @extend_schema(
        request=None,
        responses={
            200: OrderSerializer,
            409: OpenApiResponse(description="the order is not paid (transition_not_allowed)"),
        },
    )
    def post(self, request, number: str):
        services.order_fulfil(order_id=self.get_object().pk, actor=f"staff {request.user.pk}")
        return Response(OrderSerializer(self.get_object()).data)
