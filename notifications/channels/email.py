"""E-mail through Django's e-mail framework: SMTP in production (EMAIL_URL), or any backend,
e.g. one of django-anymail's for a provider's API.

Each message carries a Message-ID made from the notification's id: a message sent again
because its first sender died before recording it (notifications.delivery) has the same
Message-ID, which mail systems use to recognise a duplicate.

One connection per process, reused (a new one per message cost a TCP handshake, the
greeting, EHLO, and STARTTLS and AUTH in production): it is opened by the first message and
kept while messages follow each other. It is closed, and the next message opens another,
after an error of any kind (the session's state is then unknown), after REUSE_MAX_MESSAGES
messages (servers limit a session's messages), when it has been idle REUSE_IDLE_SECONDS
(servers drop idle sessions), when the e-mail settings change, and when the worker process
shuts down. A message that finds its reused connection closed by the server (a disconnect or
a 421) is sent once more on a new connection at once: the server may have accepted it just
before closing, so it may arrive twice (with the same Message-ID), as after any send whose
outcome is unknown. Every connection has EMAIL_TIMEOUT, and errors are sorted as before:
5xx permanent (but 530/535), the rest temporary.

A thread of the process that finds the connection busy (a threads pool) sends with a
connection of its own, opened and closed for its one message.
"""

import logging
import os
import smtplib
import threading
import time
from email.utils import parseaddr

from celery.signals import worker_process_shutdown, worker_shutdown
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend

from notifications.channels.base import Channel, PermanentFailure, TemporaryFailure

logger = logging.getLogger(__name__)

REUSE_MAX_MESSAGES = 100
REUSE_IDLE_SECONDS = 10.0
CONNECTION_SETTINGS = (
    "EMAIL_BACKEND",
    "EMAIL_HOST",
    "EMAIL_PORT",
    "EMAIL_HOST_USER",
    "EMAIL_HOST_PASSWORD",
    "EMAIL_USE_TLS",
    "EMAIL_USE_SSL",
    "EMAIL_SSL_CERTFILE",
    "EMAIL_SSL_KEYFILE",
    "EMAIL_TIMEOUT",
)


def message_id(notification) -> str:
    """<notification id@the sender's domain>, whatever form DEFAULT_FROM_EMAIL has ("Shop <shop@x>")."""
    domain = parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2] or "localhost"
    return f"<{notification.public_id}@{domain}>"


def _closed_by_server(exc: Exception) -> bool:
    """The server ended the session (a dropped idle connection, a 421): nothing says it took the message."""
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return True
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return any(code == 421 for code, _ in exc.recipients.values())
    return isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code == 421


class ReusedConnection:
    """This process's e-mail backend, kept open between messages (the module's docstring)."""

    def __init__(self):
        self.lock = threading.Lock()
        self._backend: BaseEmailBackend | None = None
        self._key: tuple = ()
        self._pid = 0
        self._messages = 0
        self._last_used = 0.0

    def send(self, message: EmailMultiAlternatives) -> None:
        """Send on the kept connection (the caller holds `lock`); raises what the backend raises."""
        reused = self._usable()
        try:
            self._backend_open().send_messages([message])
        except Exception as exc:
            self.discard()
            if not (reused and _closed_by_server(exc)):
                raise
            logger.info("smtp connection closed by the server; sending again on a new one")
            try:
                self._backend_open().send_messages([message])
            except Exception:
                self.discard()
                raise
        self._messages += 1
        self._last_used = time.monotonic()
        if self._messages >= REUSE_MAX_MESSAGES:
            self.close()

    def _usable(self) -> bool:
        """Whether a kept connection will be used: it is this process's, for these settings, not too old."""
        if self._backend is None:
            return False
        if self._pid != os.getpid():  # inherited through a fork: the parent's socket, never ours to use
            self._backend = None
            return False
        key = tuple(getattr(settings, name, None) for name in CONNECTION_SETTINGS)
        if key != self._key or time.monotonic() - self._last_used >= REUSE_IDLE_SECONDS:
            self.discard()  # no QUIT: a peer gone silent (a NAT's timeout) would hold this message
            return False
        return True

    def _backend_open(self) -> BaseEmailBackend:
        if self._backend is None:
            self._backend = get_connection(fail_silently=False, timeout=settings.EMAIL_TIMEOUT)
            self._key = tuple(getattr(settings, name, None) for name in CONNECTION_SETTINGS)
            self._pid, self._messages = os.getpid(), 0
        self._backend.open()
        return self._backend

    def close(self) -> None:
        """Close politely (QUIT); an error closing it only loses the connection."""
        backend, self._backend = self._backend, None
        if backend is None:
            return
        try:
            backend.close()
        except Exception as exc:  # noqa: BLE001 - the connection is gone either way
            logger.debug("smtp connection closed with an error", extra={"error": f"{exc!r}"})

    def discard(self) -> None:
        """The socket closed without a QUIT: after an error (the session's state is unknown), or
        when the connection is not to be reused."""
        smtp = getattr(self._backend, "connection", None)
        if isinstance(smtp, smtplib.SMTP):
            smtp.close()
        self.close()


CONNECTION = ReusedConnection()


@worker_process_shutdown.connect(weak=False, dispatch_uid="notifications.email.process_shutdown")
@worker_shutdown.connect(weak=False, dispatch_uid="notifications.email.shutdown")
def close_connection(**kwargs) -> None:
    """A worker process that stops says QUIT to the server instead of leaving the session open."""
    with CONNECTION.lock:
        CONNECTION.close()


def _send(message: EmailMultiAlternatives) -> None:
    if CONNECTION.lock.acquire(blocking=False):
        try:
            CONNECTION.send(message)
        finally:
            CONNECTION.lock.release()
        return
    message.connection = get_connection(fail_silently=False, timeout=settings.EMAIL_TIMEOUT)
    message.send()  # another thread has the kept connection: one of its own, for this message


class EmailChannel(Channel):
    name = "email"

    def address(self, user, preference=None) -> str:
        return user.email or ""

    def send(self, notification) -> str:
        message = EmailMultiAlternatives(
            subject=notification.subject,
            body=notification.body,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[notification.address],
            headers={"Message-ID": message_id(notification), "Content-Language": notification.language},
        )
        if notification.html:
            message.attach_alternative(notification.html, "text/html")
        try:
            _send(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = {code for code, _ in exc.recipients.values()}
            if all(500 <= code < 600 for code in codes):
                raise PermanentFailure(f"smtp refused the address: {exc.recipients}") from exc
            raise TemporaryFailure(f"smtp refused the address for now: {exc.recipients}") from exc
        except smtplib.SMTPResponseException as exc:
            error = f"smtp {exc.smtp_code}: {exc.smtp_error!r}"
            if 500 <= exc.smtp_code < 600 and exc.smtp_code not in (530, 535):  # not an auth problem
                raise PermanentFailure(error) from exc
            raise TemporaryFailure(error) from exc
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            raise TemporaryFailure(f"smtp unreachable: {type(exc).__name__}: {exc}") from exc
        return message_id(notification).strip("<>")
