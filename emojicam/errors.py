"""The one error type for everything a user can cause."""


class EmojicamError(Exception):
    """A problem with the user's input or environment; the CLI prints it on one line and exits 2."""
