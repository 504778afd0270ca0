"""One writer at a time: locks a stage holds on what it writes, and the temp files it left.

A lock is ``fcntl.flock`` on a file under ``RUN/locks/``. The kernel releases it when the
holder exits in any way (kill -9 included), so a crash never leaves a stale lock to
remove by hand. Once it holds the lock, the holder writes who it is (stage, host, pid,
start time, command) into the file, so a second writer can say whom it is waiting for.
The file itself stays: removing a lock file while someone waits on it would let two
processes hold "the" lock on two different files.

Only the standard library is imported here: every verb that writes a run loads it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from hubtools.errors import RunBusyError, RunStoreError

LOCKS_DIR = "locks"
_READ_TRIES = 20  # a holder writes its record just after taking the lock: retry meanwhile


class Lock:
    """The lock file ``path``, held while writing ``what`` (e.g. "shard 0/1 of runs/x").

    A context manager. Busy: ``RunBusyError`` naming the holder, or with ``wait`` wait
    until it is released (saying so once on stderr).
    """

    def __init__(self, path: Path, what: str, stage: str, *, wait: bool = False):
        self.path, self.what, self.stage, self.wait = path, what, stage, wait
        self._fd: int | None = None

    def __enter__(self) -> Lock:
        fd = self._open()
        if not _try_lock(fd, self.path):
            self._busy(fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
        self._held(fd)
        return self

    async def acquire_async(self) -> None:
        """As ``with``, but waiting polls, so the event loop (and Ctrl-C) keeps running."""
        import asyncio

        fd, said = self._open(), False
        while not _try_lock(fd, self.path):
            if not said:
                self._busy(fd)
                said = True
            await asyncio.sleep(0.2)
        self._held(fd)

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # released: nobody to name (kill -9 leaves it; _describe)
            os.close(self._fd)
            self._fd = None

    def _open(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise RunStoreError(f"cannot lock {self.path}: {err.strerror or err}") from None

    def _busy(self, fd: int) -> None:
        holder = _describe(fd)
        if not self.wait:
            os.close(fd)
            raise RunBusyError(
                f"{self.what} is being written by {holder}; wait for it, or pass --wait"
            )
        print(f"waiting for {self.what}: it is being written by {holder}", file=sys.stderr)

    def _held(self, fd: int) -> None:
        record = {
            "stage": self.stage, "pid": os.getpid(), "host": socket.gethostname(),
            "since": time.time(), "command": " ".join(sys.argv),
        }  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd


def _try_lock(fd: int, path: Path) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as err:  # ENOLCK: e.g. Lustre mounted without -o flock
        raise RunStoreError(
            f"cannot lock {path} ({os.strerror(err.errno or errno.ENOLCK)}); "
            "put the run on a file system with flock support"
        ) from None
    return True


def _describe(fd: int) -> str:
    """Who holds the lock, from its record; 'another process' if it cannot be read."""
    for _ in range(_READ_TRIES):
        try:
            record = json.loads(os.pread(fd, 65536, 0) or b"null")
        except ValueError:
            record = None
        here = isinstance(record, dict) and record.get("host") == socket.gethostname()
        if isinstance(record, dict) and not (here and not pid_alive(record.get("pid", 0))):
            since = datetime.fromtimestamp(record.get("since", 0), UTC)
            return (
                f"{record.get('stage', 'a stage')} (pid {record.get('pid')} on host "
                f"{record.get('host')}, since {since:%Y-%m-%d %H:%M} UTC)"
            )
        time.sleep(0.025)  # not written yet, or a killed holder's record: the new one follows
    return "another process"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def sweep(directory: Path, pattern: str, *, locked: bool = False) -> int:
    """Remove the temp files and folders a killed stage left in ``directory``.

    ``pattern`` is a regex whose ``pid`` group is the writer's pid: an entry goes when that
    process is gone, or always when ``locked`` (the caller holds the lock its writer held).
    The caller's own entries are kept. Returns the number removed.
    """
    regex, removed = re.compile(pattern), 0
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for entry in entries:
        match = regex.fullmatch(entry.name)
        if not match:
            continue
        pid = int(match.group("pid"))
        if pid == os.getpid() or (not locked and pid_alive(pid)):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            Path(entry.path).unlink(missing_ok=True)
        removed += 1
    return removed


def sweep_beside(path: Path) -> int:
    """Remove the ``.NAME.<pid>.tmp`` files a killed writer of ``path`` left beside it."""
    real = path.resolve()
    return sweep(real.parent, rf"\.{re.escape(real.name)}\.(?P<pid>\d+)\.tmp")
