"""The OpenAPI schema documents every error an operation can answer, as one `Error` component.

`AutoSchema` (REST_FRAMEWORK's DEFAULT_SCHEMA_CLASS) is drf-spectacular's, plus the errors
that follow from what the operation is:

| status | when |
|---|---|
| 400 | it takes a body, query parameters or an Idempotency-Key header |
| 401 | it authenticates (a bad token is refused even where signing in is optional) |
| 403 | staff only (or another permission), or an unsafe method with session authentication (CSRF) |
| 404 | its path names something (`{number}`, `{booking_id}`...) |
| 413, 415 | it takes a body: too large, or not JSON/form data |
| 409, 422 | it takes an Idempotency-Key: its first request still runs, or it came with other parameters |
| 429 | it is rate limited |
| 503 | its rate limit fails closed (`throttle_scope`, e.g. logins) |

409 and 422 depend on the service behind the view: each view declares them with
`extend_schema(responses=...)`, and whatever it declares for a 4xx or 5xx is given the
`Error` schema, with the view's description.
"""

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse
from rest_framework import permissions, serializers
from rest_framework.authentication import SessionAuthentication

from core.idempotency import HEADER as IDEMPOTENCY_HEADER

ERROR_DESCRIPTIONS = {
    "400": "Invalid input (body, query parameter or header): `extra.fields` names each.",
    "401": "Not signed in, or the token is not valid.",
    "403": "Not allowed: staff only, or a CSRF failure when signed in by session.",
    "404": "Not found (or not yours).",
    "409": "A change the current status does not allow.",
    "413": "The body is larger than the server takes (DATA_UPLOAD_MAX_MEMORY_SIZE).",
    "415": "The body's Content-Type is not application/json (or form data).",
    "422": "A business rule refused the request: see `code`.",
    "429": "Too many requests: `extra.wait` is the seconds to wait.",
    "500": "An unexpected error; `extra.request_id` finds it in the logs.",
    "503": "A service the request needs is unavailable: try again later.",
}
_OPEN = (permissions.AllowAny, permissions.IsAuthenticated)


class ErrorSerializer(serializers.Serializer):
    """Every error the API answers."""

    code = serializers.CharField(help_text="Stable and machine-readable, e.g. `invalid`, `slot_taken`")
    message = serializers.CharField(help_text="For people; may change")
    extra = serializers.DictField(
        help_text="Details: `fields` (what is wrong with each input) on a 400, `wait` on a 429..."
    )


class AutoSchema(openapi.AutoSchema):
    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation["responses"]
        for code in self._implied_errors(operation):
            responses.setdefault(code, {})
        for code, response in list(responses.items()):
            if code.isdigit() and int(code) >= 400:
                description = response.get("description")
                if not description or description == "No response body":
                    description = ERROR_DESCRIPTIONS.get(code, "An error.")
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description=description), code
                )
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _implied_errors(self, operation: dict) -> set[str]:
        view = self.view
        locations = {parameter["in"] for parameter in operation.get("parameters", [])}
        has_body = "requestBody" in operation  # a DELETE that reads one declares its 413 and 415
        codes = set()
        if has_body or locations & {"query", "header"}:
            codes.add("400")
        if has_body:
            codes |= {"413", "415"}
        if "path" in locations:
            codes.add("404")
        if any(
            p["in"] == "header" and p["name"] == IDEMPOTENCY_HEADER for p in operation.get("parameters", [])
        ):
            codes |= {"409", "422"}  # request_in_progress, idempotency_key_reused (core/idempotency.py)
        authenticators = view.get_authenticators()
        if authenticators:
            codes.add("401")
        if not all(isinstance(p, _OPEN) for p in view.get_permissions()):
            codes.add("403")
        if self.method not in permissions.SAFE_METHODS and any(
            isinstance(a, SessionAuthentication) for a in authenticators
        ):
            codes.add("403")
        if view.get_throttles():
            codes.add("429")
        if getattr(view, "throttle_scope", None):
            codes.add("503")
        return codes
