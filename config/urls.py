from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path

from core.api import RedocView, SchemaView, SwaggerView, no_endpoint
from core.events.asyncapi import AsyncAPIView
from core.health import healthz, readyz
from core.metrics import metrics_view
from payments.views import sandbox_pay

admin.site.site_header = f"{settings.PROJECT_NAME} administration"
admin.site.site_title = f"{settings.PROJECT_NAME} admin"
admin.site.index_title = settings.PROJECT_NAME

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("pay/sandbox/<str:reference>", sandbox_pay, name="sandbox-pay"),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", SwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", RedocView.as_view(url_name="schema"), name="redoc"),
    path("api/auth/", include("accounts.api.urls")),
    path("api/integrations/", include("core.urls")),
    path("api/events/asyncapi.json", AsyncAPIView.as_view(), name="events-asyncapi"),
    path("api/", include("payments.api.urls")),
    path("api/", include("orders.api.urls")),
    path("api/", include("bookings.api.urls")),
    path("api/", include("subscriptions.api.urls")),
    path("api/", include("notifications.api.urls")),
    re_path(r"^api/(?P<rest>.*)$", no_endpoint),  # last: an unknown API address is a JSON 404
]

# Errors outside DRF (an unknown URL, a body too large, a crash) answer JSON under /api/ and
# Django's pages elsewhere.
handler400 = "core.api.bad_request"
handler403 = "core.api.permission_denied"
handler404 = "core.api.page_not_found"
handler500 = "core.api.server_error"
