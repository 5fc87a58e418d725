"""Progress of the evaluation stages: a bar on the terminal while a stage runs, one line per stage in a log.

At 10,000 classes a stage (a tree, the permutation test, retrieval, the
plots) takes from seconds to minutes; :class:`Stages` shows each on stderr
with tqdm (only on a terminal) and, when the stage ends, hands one line
``<stage>: <seconds> s`` to its log (``evaluate.py`` writes them to
``evaluate.log``).  Code that measures takes an optional ``Stages`` and
reports through :meth:`Stages.stage`::

    with stages.stage("permutation test (W)", total=999) as tick:
        ...
        tick(done)          # or tick(done, total) when the total changes
"""
import os
import sys
import time
from contextlib import contextmanager

from tqdm import tqdm

LOG = "evaluate.log"  # the stage log next to the results


class Stages:
    """Stage reporter.  ``log``: called with each finished stage's line (None: lines are only kept in ``lines``)."""

    def __init__(self, log=None):
        self.log = log
        self.lines = []

    def started(self, name):
        """Hook: a stage begins (the benchmark measures memory per stage here)."""

    def finished(self, name, seconds):
        """Hook: a stage ended after ``seconds``; returns extra text for its log line."""
        return ""

    @contextmanager
    def stage(self, name, total=None, unit="step"):
        bar = tqdm(total=total, desc=name, unit=unit, leave=False, disable=None, file=sys.stderr)

        def tick(done, new_total=None):
            if new_total is not None and new_total != bar.total:
                bar.reset(total=new_total)
            bar.update(done - bar.n)

        self.started(name)
        start = time.perf_counter()
        try:
            yield tick
        finally:
            bar.close()
        seconds = time.perf_counter() - start
        line = f"{name}: {seconds:.1f} s{self.finished(name, seconds)}"
        self.lines.append(line)
        if self.log is not None:
            self.log(line)


@contextmanager
def _silent(*_):
    yield lambda done, new_total=None: None


def stage(stages, name, total=None, unit="step"):
    """``stages.stage(...)``, or a silent stage (no bar, no line) when ``stages`` is None."""
    return _silent() if stages is None else stages.stage(name, total, unit)


def file_log(path):
    """A ``log`` for :class:`Stages`: appends each line, with the time, to the file ``path`` (folder created)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def write(line):
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    return write
