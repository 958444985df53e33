"""The API's errors, in one shape: {"code", "message", "extra"}.

- `exception_handler` (DRF's EXCEPTION_HANDLER) renders every error a view raises;
- the Django error views `bad_request`, `permission_denied`, `page_not_found` and
  `server_error` (config/urls.py) answer JSON under /api/ and keep Django's pages elsewhere:
  an unknown URL, a body too large read outside DRF, a crash;
- the schema and documentation views answer their errors in JSON too, not in YAML or HTML.

The classes REST_FRAMEWORK names (parsers, filters, pagination, rate limits) are core.drf;
the OpenAPI side (the Error component on every error response) is core.openapi.
"""

from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpResponsePermanentRedirect, JsonResponse
from django.urls import Resolver404, resolve
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework import exceptions, status
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from core.drf import RequestTooLarge, too_large_message
from core.errors import ApplicationError
from core.logging import request_id_var

API_PREFIX = "/api/"


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            text = _first_message(value)
            return text if key == "non_field_errors" else f"{key}: {text}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response(exc.body, status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):  # Django's own check, e.g. on a form body
        exc = RequestTooLarge(too_large_message())

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: server_error answers 500 and the log has the traceback
    if isinstance(exc, exceptions.ValidationError):
        body = {"code": "invalid", "message": _first_message(exc.detail), "extra": {"fields": exc.detail}}
        response.status_code = status.HTTP_400_BAD_REQUEST
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        extra = {"wait": exc.wait} if isinstance(exc, exceptions.Throttled) else {}
        body = {
            "code": code if isinstance(code, str) else "error",
            "message": _first_message(detail),
            "extra": extra,
        }
    response.data = body
    return response


# --- Django's error views: JSON under /api/, Django's pages elsewhere -----------------------
def is_api_request(request) -> bool:
    return request.path_info.startswith(API_PREFIX)


def error_response(status_code: int, code: str, message: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"code": code, "message": message, "extra": extra}, status=status_code)


def bad_request(request, exception):
    """handler400: a SuspiciousOperation outside DRF; a body over the size limit is a 413."""
    if not is_api_request(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        return error_response(413, "request_too_large", too_large_message())
    return error_response(400, "bad_request", "The request could not be understood.")


def permission_denied(request, exception):
    if not is_api_request(request):
        return defaults.permission_denied(request, exception)
    return error_response(403, "permission_denied", "You do not have permission to perform this action.")


def page_not_found(request, exception):
    if not is_api_request(request):
        return defaults.page_not_found(request, exception)
    return error_response(404, "not_found", "No endpoint at this address.", path=request.path)


@csrf_exempt  # it changes nothing, and its answer must be the JSON 404, not a CSRF page
def no_endpoint(request, rest: str = ""):
    """The last URL pattern under /api/: an unknown address is a JSON 404 even with DEBUG on
    (Django then shows its own page instead of calling handler404). An address that exists
    with a trailing slash is redirected there, as APPEND_SLASH would."""
    if not request.path.endswith("/"):
        try:
            match = resolve(f"{request.path}/", getattr(request, "urlconf", None))
        except Resolver404:
            match = None
        if match is not None and match.func is not no_endpoint:
            return HttpResponsePermanentRedirect(f"{request.path}/")
    return error_response(404, "not_found", "No endpoint at this address.", path=request.path)


def server_error(request):
    if not is_api_request(request):
        return defaults.server_error(request)
    extra = {"request_id": request_id_var.get()} if request_id_var.get() else {}
    return error_response(500, "server_error", "An unexpected error occurred; it has been logged.", **extra)


# --- The schema and its pages: their errors in JSON as well -----------------------------------
class _JSONErrors:
    """Render an error as JSON, whatever renders the view's answers (YAML, an HTML page)."""

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response


class SchemaView(_JSONErrors, SpectacularAPIView):
    pass


class SwaggerView(_JSONErrors, SpectacularSwaggerView):
    pass


class RedocView(_JSONErrors, SpectacularRedocView):
    template_name = "core/redoc.html"  # no web fonts from another site


class MachineWebhookView(APIView):
    """Base of the endpoints providers post to (payment gateways, Twilio, Telegram).

    A provider is a machine posting a body it authenticates in its own way (a signature, a
    secret header), so none of DRF's request handling applies (content negotiation, parsers,
    authentication, permissions, throttles): `dispatch` goes straight to `post` with Django's
    request, which also saves CPU on the busiest endpoints. DRF still documents it. Errors
    keep the API's shape: any method but POST is a 405 with an Allow header, an
    ApplicationError its status with {"code", "message", "extra"}.
    """

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes: list = []

    def dispatch(self, request, *args, **kwargs):
        if request.method != "POST":
            refused = ApplicationError(f'Method "{request.method}" not allowed.', code="method_not_allowed")
            return JsonResponse(refused.body, status=405, headers={"Allow": "POST"})
        try:
            return self.post(request, *args, **kwargs)
        except ApplicationError as exc:
            return JsonResponse(exc.body, status=exc.status_code)
