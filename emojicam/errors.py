"""The one error type for everything a user can cause, and the exception a termination signal becomes."""

import signal
import sys


class EmojicamError(Exception):
    """A problem with the user's input or environment; the CLI prints it on one line and exits 2."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread as Ctrl-C is, so every `finally`/`with` cleans up the same way;
    the CLI then exits with 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def warn(message: str) -> None:
    """One warning line on stderr: something was skipped or changed, and the work goes on."""
    print(f"emojicam: warning: {message}", file=sys.stderr, flush=True)
