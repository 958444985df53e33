"""E-mail through Django's e-mail framework: SMTP in production (EMAIL_URL), or any backend,
e.g. one of django-anymail's for a provider's API.

Each message carries a Message-ID made from the notification's id: a message sent again
because its first sender died before recording it (notifications.delivery) has the same
Message-ID, which mail systems use to recognise a duplicate.
"""

import smtplib
from email.utils import parseaddr

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection

from notifications.channels.base import Channel, PermanentFailure, TemporaryFailure


def message_id(notification) -> str:
    """<notification id@the sender's domain>, whatever form DEFAULT_FROM_EMAIL has ("Shop <shop@x>")."""
    domain = parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2] or "localhost"
    return f"<{notification.public_id}@{domain}>"


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
            connection=get_connection(fail_silently=False, timeout=settings.EMAIL_TIMEOUT),
        )
        if notification.html:
            message.attach_alternative(notification.html, "text/html")
        try:
            message.send()
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
