"""The one exception type that the CLI turns into a one-line error (exit 2)."""


class UserError(Exception):
    """Bad input from the user: a missing file, an invalid option, a bad corpus.

    The CLI prints ``mbd: error: <message>`` on one line and exits with code 2.
    Raise it *before* anything is written, so that a failed command leaves
    nothing half-written behind.
    """
