"""The exception types that the CLI turns into a one-line error (exit 2)."""


class UserError(Exception):
    """Bad input from the user: a missing file, an invalid option, a bad corpus.

    The CLI prints ``mbd: error: <message>`` on one line and exits with code 2.
    Raise it *before* anything is written, so that a failed command leaves
    nothing half-written behind.
    """


class OutputExists(UserError):
    """An output that is already there and may not be replaced.

    The library names the path; the CLI adds how to replace it (``--overwrite``,
    which every verb that refuses an existing output has).

    Args:
        path: the output that exists.
        what: what the output is, for the message (``"model file"``).
    """

    def __init__(self, path, what="output"):
        super().__init__(f"the {what} {path} already exists")
        self.path = path
        self.what = what
