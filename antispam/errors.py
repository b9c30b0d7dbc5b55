"""Exceptions that carry a message meant for a person (CLI) or a client (HTTP)."""


class UserError(Exception):
    """Bad input or setup the user can fix; the CLI prints it and exits non-zero."""

    exit_code = 2
