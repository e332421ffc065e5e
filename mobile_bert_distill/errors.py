"""The exception types that the CLI turns into a one-line error (exit 2)."""


class UserError(Exception):
    """Bad input from the user: a missing file, an invalid option, a bad corpus.

    The CLI prints ``mbd: error: <message>`` on one line and exits with code 2.
    Raise it *before* anything is written, so that a failed command leaves
    nothing half-written behind. The message speaks of values, not of command-line
    flags; where passing a parameter resolves the error, name it in ``option``.

    Args:
        message: what is wrong, in the terms of the library's values.
        option: the keyword parameter that resolves the error (``"restart"``); the CLI
            adds ``(pass --restart PURPOSE)`` on the verbs that have that option.
        purpose: what passing ``option`` does (``"to start over"``).

    Example:
    >>> e = UserError("the run folder out already exists", option="overwrite", purpose="to replace it")
    >>> e.option, str(e)
    ('overwrite', 'the run folder out already exists')
    """

    def __init__(self, message, *, option=None, purpose=None):
        super().__init__(message)
        self.option = option
        self.purpose = purpose


class OutputExists(UserError):
    """An output that is already there and may not be replaced (``overwrite`` replaces it).

    Args:
        path: the output that exists.
        what: what the output is, for the message (``"model file"``).
    """

    def __init__(self, path, what="output"):
        super().__init__(f"the {what} {path} already exists", option="overwrite", purpose="to replace it")
        self.path = path
        self.what = what
