"""E-mail errors, typed once; the `send_email` activity maps them to Temporal failures."""


class EmailError(Exception):
    pass


class EmailContextError(EmailError):
    """The caller asked for an e-mail that cannot be built: unknown kind, bad context or
    invite, invalid address. Retrying cannot help."""


class TemporaryDeliveryError(EmailError):
    """The server, the network or our SMTP configuration failed; a later attempt may pass."""


class PermanentDeliveryError(EmailError):
    """The server refused this message or this recipient for good (a 5xx reply)."""
