from django.urls import path

from orders.api import views

app_name = "orders"
urlpatterns = [
    path("categories", views.CategoryListView.as_view(), name="categories"),
    path("products", views.ProductListView.as_view(), name="products"),
    path("products/<slug:slug>", views.ProductDetailView.as_view(), name="product"),
    path("cart", views.CartView.as_view(), name="cart"),
    path("cart/items", views.CartItemsView.as_view(), name="cart-items"),
    path("cart/items/<int:item_id>", views.CartItemView.as_view(), name="cart-item"),
    path("checkout", views.CheckoutView.as_view(), name="checkout"),
    path("orders", views.OrderListView.as_view(), name="orders"),
    path("orders/<str:number>", views.OrderDetailView.as_view(), name="order"),
    path("orders/<str:number>/audit", views.OrderAuditView.as_view(), name="order-audit"),
    path("orders/<str:number>/cancel", views.OrderCancelView.as_view(), name="order-cancel"),
    path("orders/<str:number>/pay", views.OrderPayView.as_view(), name="order-pay"),
    path("orders/<str:number>/fulfil", views.OrderFulfilView.as_view(), name="order-fulfil"),
]
