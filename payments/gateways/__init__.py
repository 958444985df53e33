"""Payment gateways behind one interface (base.PaymentGateway); see base.py."""
