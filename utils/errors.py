"""User-facing errors, and how a command line program ends.

A mistake in the user's input (a missing folder, contradictory flags, a corrupt
image, a record that is not a record) raises :class:`UserError`.  The command
line entry points catch it with :func:`exit_on_user_error` and print one line
naming the problem and the fix, then exit with status 2 - never a traceback.
The same wrapper ends quietly when the reader of the output goes away
(``evaluate.py ... | head``: exit status 141, as a process stopped by SIGPIPE)
and on Ctrl-C (one line, exit status 130).
"""
import argparse
import difflib
import functools
import os
import re
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


def did_you_mean(word, choices):
    """`` (did you mean X?)`` naming the choice closest to ``word`` (the same name in another case first),
    else ``""``."""
    choices = [str(c) for c in choices]
    word = str(word)
    same = [c for c in choices if c.lower() == word.lower() and c != word]
    close = same or difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


class ArgumentParser(argparse.ArgumentParser):
    """The project's argument parser: whole flag names only (``allow_abbrev=False``: ``--epoch`` is not
    ``--epochs``) and every usage error one :class:`UserError` line (exit status 2 through
    :func:`exit_on_user_error`) with the nearest flag or choice and where the help is, instead of the usage block."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UserError(f"{message}{self._hint(message)}; see {self.prog} --help")

    def option_names(self):
        """Every flag the parser knows (``--epochs``, ``-h``, ...)."""
        return [s for action in self._actions for s in action.option_strings]

    def _hint(self, message):
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        if unknown:
            flags = [t.split("=")[0] for t in unknown.group(1).split() if t.startswith("-")]
            return did_you_mean(flags[0], self.option_names()) if flags else ""
        choice = re.search(r"invalid choice: '(.*?)' \(choose from (.*)\)", message)
        if choice:
            return did_you_mean(choice.group(1), re.findall(r"'(.*?)'", choice.group(2)))
        return ""
