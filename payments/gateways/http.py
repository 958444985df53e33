"""The gateways' HTTP client: core.http.HTTPClient, failing with GatewayError."""

from core.http import HTTPClient
from payments.gateways.base import GatewayError


class GatewayHTTP(HTTPClient):
    """Timeouts and retries of core.http.HTTPClient; what still fails raises GatewayError.

    Gateways and the payment services that call them handle GatewayError (transient or not),
    so the client raises it directly rather than every gateway translating core's HTTPError.
    """

    user_agent = "fulfil-payments/1.0"

    def error(self, message: str, *, transient: bool, status: int | None = None) -> GatewayError:
        return GatewayError(message, transient=transient, status=status)
