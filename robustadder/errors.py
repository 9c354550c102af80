"""Errors a user can cause.

Everything a user can get wrong (a bad checkpoint, an unknown model, a missing data directory, a bad
epsilon, a corrupt store) raises :class:`UserError`. The CLI turns it into one line on stderr and exit
code 2; library callers get an ordinary exception they can catch. Keeping this type separate from
programming errors is what lets the CLI print a traceback only for our own bugs.
"""

from __future__ import annotations

from collections.abc import Callable


class UserError(Exception):
    """A problem with the user's input: the message names the problem and the fix, on one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP (or Ctrl-C) arrived: stop cleanly, keep the finished batches, mark what was running.

    A subclass of KeyboardInterrupt, so that every path that already handles Ctrl-C handles a ``kill`` or a
    closed terminal the same way; ``signum`` gives the conventional exit status 128 + signum.
    """

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)


def render_by_format(fmt: str, renderers: dict[str, Callable[[], str]]) -> str:
    """What the renderer of ``fmt`` returns: the one dispatch of the typed results' ``render``.

    A format they do not have is the user's error, named with the ones they have.
    """
    if fmt not in renderers:
        raise UserError(f"format {fmt} is not one of {', '.join(renderers)}")
    return renderers[fmt]()


def interruption(exc: BaseException) -> tuple[str, int]:
    """What interrupted the process (``SIGTERM``...) and the exit status a shell expects for it."""
    if isinstance(exc, Interrupted):
        return exc.name, 128 + exc.signum
    return "SIGINT", 130
