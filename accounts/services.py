from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from rest_framework.authtoken.models import Token

from accounts.models import User
from core.errors import BusinessRuleViolation, InvalidInput


def user_register(*, email: str, password: str, phone: str = "", preferred_language: str = "en") -> User:
    email = User.objects.normalize_email(email).lower()
    candidate = User(email=email, phone=phone, preferred_language=preferred_language)
    try:
        validate_password(password, user=candidate)
    except DjangoValidationError as exc:
        raise InvalidInput("The password is too weak.", extra={"fields": {"password": exc.messages}}) from exc
    try:
        with transaction.atomic():
            return User.objects.create_user(
                email=email, password=password, phone=phone, preferred_language=preferred_language
            )
    except IntegrityError as exc:
        raise BusinessRuleViolation(
            "An account with this e-mail address already exists.", code="email_taken"
        ) from exc


def token_issue(*, email: str, password: str) -> Token:
    """The user's API token (one per user; issuing again returns the same until revoked)."""
    user = authenticate(username=email.lower(), password=password)
    if user is None:
        raise InvalidInput("E-mail or password is wrong.", code="invalid_credentials")
    return token_for_user(user=user)


def token_for_user(*, user: User) -> Token:
    token, _ = Token.objects.get_or_create(user=user)
    return token


def token_revoke(*, user: User) -> None:
    Token.objects.filter(user=user).delete()
