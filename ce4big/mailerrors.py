"""E-mail errors, typed once. The `send_email` activity raises each as a Temporal
`ApplicationError` whose `type` is the class name, retryable only for `TemporaryEmailError`."""


class EmailError(Exception):
    pass


class EmailContextError(EmailError):
    """The caller asked for an e-mail that cannot be built: unknown kind, bad context or
    invite, invalid address. Retrying cannot help."""


class TemporaryEmailError(EmailError):
    """The network, the server or our SMTP configuration failed; a later attempt may pass."""


class PermanentEmailError(EmailError):
    """The server refused this message or this recipient for good (a 5xx reply)."""
