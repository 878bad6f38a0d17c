"""The one error type of the local edge."""


class EdgeError(RuntimeError):
    """The local edge itself failed (a broker or module did not start, a wait timed out...); says why."""
