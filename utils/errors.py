"""User-facing errors, and how a command line program ends.

A mistake in the user's input (a missing folder, contradictory flags, a corrupt
image, a record that is not a record) raises :class:`UserError`.  The command
line entry points catch it with :func:`exit_on_user_error` and print one line
naming the problem and the fix, then exit with status 2 - never a traceback.
The same wrapper ends quietly when the reader of the output goes away
(``evaluate.py ... | head``: exit status 141, as a process stopped by SIGPIPE)
and on Ctrl-C (one line, exit status 130).
"""
import functools
import os
import sys

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as the shell reports a process stopped by Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


class UserError(Exception):
    """A problem with the user's input; the message says what to do."""


def exit_on_user_error(main=None, *, interrupted="interrupted"):
    """Decorate a ``main()``: a :class:`UserError` becomes one line on stderr and exit 2.

    A closed output pipe ends the program without a word (exit 141); Ctrl-C
    prints ``interrupted`` (the text can be given:
    ``@exit_on_user_error(interrupted="interrupted; the same command resumes")``)
    and exits 130.
    """
    if main is None:
        return functools.partial(exit_on_user_error, interrupted=interrupted)

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            try:
                return main(*args, **kwargs)
            finally:
                sys.stdout.flush()  # here, where a closed pipe is still caught (not in the interpreter's exit)
        except UserError as err:
            message = " ".join(str(err).split())  # exactly one line
            print(f"error: {message}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        except BrokenPipeError:
            # the reader is gone: send what is still buffered nowhere, so the exit's flush cannot fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(EXIT_BROKEN_PIPE)
        except KeyboardInterrupt:
            print(f"\n{interrupted}", file=sys.stderr, flush=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper
