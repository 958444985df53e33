"""The gateways by name, built from settings."""

from django.conf import settings
from django.utils.module_loading import import_string

from payments.gateways.base import PaymentGateway

GATEWAY_CLASSES = {
    "sandbox": "payments.gateways.sandbox.SandboxGateway",
    "paystack": "payments.gateways.paystack.PaystackGateway",
    "stripe": "payments.gateways.stripe.StripeGateway",
    "yookassa": "payments.gateways.yookassa.YooKassaGateway",
    "tinkoff": "payments.gateways.tinkoff.TinkoffGateway",
    "sberpay": "payments.gateways.sberpay.SberPayGateway",
}


def gateway_refusal(name: str) -> str:
    """Why a new payment may not go through gateway `name` here ("" if it may)."""
    if settings.PAYMENT_ENV == "mock" and name != "sandbox":
        return "With PAYMENT_ENV=mock every payment goes through the sandbox."
    if settings.PAYMENT_ENV == "production" and name == "sandbox":
        return "The sandbox takes no real money: it is off in production."
    return ""


def gateway_for(name: str) -> PaymentGateway:
    if name not in GATEWAY_CLASSES:
        raise KeyError(f"unknown gateway {name!r}")
    if name == "sandbox" and settings.PAYMENT_ENV == "production":
        raise ValueError("the sandbox takes no real money: it is off with PAYMENT_ENV=production")
    config = {**settings.PAYMENT_GATEWAYS.get(name, {}), "env": settings.PAYMENT_ENV}
    return import_string(GATEWAY_CLASSES[name])(config)
