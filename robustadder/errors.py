"""Errors a user can cause.

Everything a user can get wrong (a bad checkpoint, an unknown model, a missing data directory, a bad
epsilon, a corrupt store) raises :class:`UserError`. The CLI turns it into one line on stderr and exit
code 2; library callers get an ordinary exception they can catch. Keeping this type separate from
programming errors is what lets the CLI print a traceback only for our own bugs.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input: the message names the problem and the fix, on one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
