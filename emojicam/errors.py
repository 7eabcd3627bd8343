"""The one error type for everything a user can cause, and the exception a termination signal becomes."""

import signal


class EmojicamError(Exception):
    """A problem with the user's input or environment; the CLI prints it on one line and exits 2."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread as Ctrl-C is, so every `finally`/`with` cleans up the same way;
    the CLI then exits with 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
