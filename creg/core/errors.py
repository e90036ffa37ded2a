"""The error every layer raises when a run cannot start or continue: one line that says why and what to do."""


class RunError(RuntimeError):
    """A run cannot start or continue; the message says why and what to do."""
