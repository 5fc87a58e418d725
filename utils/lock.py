"""One writer per run folder: an operating-system lock on ``<run folder>/train.lock``.

A training process holds the lock from before it looks at the folder until it
exits.  The operating system releases it when the process ends, however it
ends (a killed or requeued job leaves no stale lock), so the file itself may
stay behind: only the lock on it counts.  The file's text names the holder
(``host pid``) for the message a second process gets.

    with RunLock(run_dir):      # UserError (exit 2) when another process trains this run
        ...train...
    holder(run_dir)             # "host pid" of the process training it now, or None
"""
import os
import socket
import time

from utils.errors import UserError

LOCK_FILE = "train.lock"
PROBE_RETRIES = 5  # attempts, 50 ms apart, before a held lock counts as held by another trainer

try:  # POSIX
    import fcntl

    def _try_lock(fd):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd):
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # Windows
    import msvcrt

    def _try_lock(fd):
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd):
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _read_holder(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def run_files(run_dir):
    """The entries of ``run_dir`` other than its lock file (none when the folder does not exist): what a run
    has written there."""
    return [e for e in os.listdir(run_dir) if e != LOCK_FILE] if os.path.isdir(run_dir) else []


def holder(run_dir):
    """``"host pid"`` of the process that holds the run's lock now, ``"another process"`` if it has not
    written its name yet, or ``None`` when nobody holds it (no folder, no lock file, or a stale file)."""
    path = os.path.join(run_dir, LOCK_FILE)
    if not os.path.isfile(path):
        return None
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        if _try_lock(fd):
            _unlock(fd)
            return None
    finally:
        os.close(fd)
    return _read_holder(path) or "another process"


def describe(who):
    """``"host h pid 12"`` from the lock file's ``"h 12"``."""
    parts = who.split()
    return f"host {parts[0]} pid {parts[1]}" if len(parts) == 2 else who


class RunLock:
    """Hold ``<run_dir>/train.lock`` (creating the folder) or refuse with :class:`UserError` naming the holder."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, LOCK_FILE)
        self.fd = None

    def acquire(self):
        try:
            os.makedirs(self.run_dir, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise UserError(f"cannot create {self.path} ({err.strerror}); choose a writable --record_dir") from None
        for _ in range(PROBE_RETRIES):  # holder() probes take the lock for an instant: try again
            if _try_lock(fd):
                break
            time.sleep(0.05)
        else:
            os.close(fd)
            who = _read_holder(self.path) or "another process"
            raise UserError(
                f"{self.run_dir} is being trained by {describe(who)}; wait for it to finish, or stop it "
                f"and continue with --resume"
            )
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        os.fsync(fd)
        self.fd = fd
        return self

    def release(self):
        if self.fd is not None:
            try:
                _unlock(self.fd)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
