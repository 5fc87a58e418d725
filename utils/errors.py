"""User-facing errors.

A mistake in the user's input (a missing folder, contradictory flags, a corrupt
image, a record that is not a record) raises :class:`UserError`.  The command
line entry points catch it with :func:`exit_on_user_error` and print one line
naming the problem and the fix, then exit with status 2 - never a traceback.
"""
import functools
import sys


class UserError(Exception):
    """A problem with the user's input; the message says what to do."""


def exit_on_user_error(main):
    """Decorate a ``main()``: a :class:`UserError` becomes one line on stderr and exit 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            message = " ".join(str(err).split())  # exactly one line
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)

    return wrapper
