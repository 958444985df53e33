"""What a channel is: how it finds a recipient's address and how it sends one message.

A channel's `send` is called outside any database transaction, with the Notification as it
was reserved (address, subject, body recorded at queueing). It returns the provider's
message id, or raises:

- `PermanentFailure`: the message can never go (an invalid or unsubscribed number, a chat
  that blocked the bot, a refused address): failed at once, not retried;
- `TemporaryFailure` (timeouts, connection errors, 5xx, 429 with `retry_after`): retried with
  backoff and jitter until NOTIFICATIONS_MAX_ATTEMPTS, then failed;
- `OutcomeUnknown`: the provider may have the message (no answer to a request it received):
  asked with `confirm_sent` before anything is sent again.

Any other exception is treated as temporary. `confirm_sent` is asked when a send's outcome
is unknown (its worker died between sending and recording): the provider's id if the
provider shows the message went, None if it does not know (the message is sent again).
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from notifications.models import Notification


class ChannelError(Exception):
    pass


class PermanentFailure(ChannelError):
    """The message can never be delivered this way."""


class TemporaryFailure(ChannelError):
    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class OutcomeUnknown(TemporaryFailure):
    """The request reached the provider and no answer came back (a read timeout): the message
    may have been taken. Raised only by a channel that can be asked (`confirm_sent`): the
    message is not sent again before the provider was asked."""


class Channel:
    name: str = ""
    external: bool = True  # False: nothing leaves the database (in-app)

    def configured(self) -> bool:
        """Credentials are set: without them the channel is skipped, not failed."""
        return True

    def address(self, user, preference=None) -> str:
        """The user's address on this channel now, or "" (the channel is skipped for them).

        `preference`: the user's notifications.Preference when the caller has it already
        (unsaved defaults if they have none), so that a channel reading it makes no query."""
        raise NotImplementedError

    def staff_address(self) -> str:
        """The staff's shared address on this channel (a group chat), or "" (none)."""
        return ""

    def send(self, notification: "Notification") -> str:
        raise NotImplementedError

    def confirm_sent(self, notification: "Notification") -> str | None:
        return None
