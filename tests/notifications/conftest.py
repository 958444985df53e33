import pytest

from notifications import cache
from notifications.channels.email import close_connection
from tests.notifications.smtp import SmtpServer


@pytest.fixture(autouse=True)
def _fresh_staff_settings():
    """No rules or templates kept from another test (its rows were rolled back, which sends no
    signal), and none left to the next tests."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def smtp_server(settings):
    """A local SMTP server, and Django's SMTP backend pointed at it (2 s timeout)."""
    with SmtpServer() as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_TIMEOUT = 2
        yield server
        close_connection()  # the process's kept connection, to a server that stops now
