"""The tap's download folder: one per run, removed on every exit the tap survives; the folders of
runs that were killed are removed by the next run, never the folder of a run still going.

Each run's folder, ``<TMPDIR>/tap-amplitude-run-<random>/``, holds a ``run.lock`` file that the
run keeps locked (``flock``, exclusive) for as long as it lives. The kernel releases that lock
however the process ends, SIGKILL and the OOM killer included, so a later run that can take the
lock knows the folder's run is gone, and removes the folder; a folder whose lock is held belongs
to a run still going (of any user of the machine: a folder another user owns is never touched),
and is left alone. A folder gets its final name only once its lock is held (it is made under a
staging name, then renamed), so no run ever finds another's folder unlocked.

Two kinds of folder carry no lock to ask: a staging folder a kill left behind, and the folders of
tap versions before this one (``tap-amplitude-<8 characters>``). They are removed once nothing
in them has changed for :data:`UNLOCKED_GRACE_SECONDS`.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from tap_amplitude.client import FatalExportError

logger = logging.getLogger("tap-amplitude")

PREFIX = "tap-amplitude-run-"
LOCK_NAME = "run.lock"
_STAGING_PREFIX = ".tap-amplitude-new-"
_EARLIER_VERSION = re.compile(r"tap-amplitude-[a-z0-9_]{8}")  # tempfile.mkdtemp's names
UNLOCKED_GRACE_SECONDS = 3600.0


class RunFolder:
    """This run's private folder for downloads (``path``), locked while the run lives.

    ``remove()`` deletes it; it also runs at interpreter exit (a SIGTERM's ``sys.exit``, a fatal
    error), so only a kill that ends the process at once leaves the folder, for the next run.
    """

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self._lock_fd: int | None = lock_fd
        atexit.register(self.remove)

    @classmethod
    def create(cls, root: Path | None = None) -> RunFolder:
        """Remove killed runs' leftovers under ``root`` (default: the temp folder, TMPDIR), then
        make this run's folder there."""
        parent = Path(root or tempfile.gettempdir())
        remove_leftovers(parent)
        try:
            staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=parent))
            lock_fd = os.open(staging / LOCK_NAME, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            os.write(lock_fd, f"{os.getpid()}\n".encode())  # for a person; the lock decides
            final = parent / (PREFIX + staging.name.removeprefix(_STAGING_PREFIX))
            staging.rename(final)
        except OSError as error:
            msg = (
                f"cannot make the download folder in {parent} ({error.strerror or error}); "
                "point TMPDIR at a writable disk with room for two export windows"
            )
            raise FatalExportError(msg) from error
        return cls(final, lock_fd)

    def remove(self) -> None:
        """Delete the folder and everything in it, then let go of its lock (idempotent)."""
        if self._lock_fd is None:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._lock_fd)
        self._lock_fd = None
        atexit.unregister(self.remove)


def remove_leftovers(parent: Path | None = None) -> list[Path]:
    """Remove the folders of killed runs under ``parent`` (default: the temp folder, TMPDIR);
    returns the folders removed."""
    parent = Path(parent or tempfile.gettempdir())
    removed = []
    now = time.time()
    for path in sorted(parent.glob("*tap-amplitude-*")):
        name = path.name
        try:
            info = path.lstat()
        except OSError:
            continue
        if not path.is_dir() or path.is_symlink() or info.st_uid != os.getuid():
            continue
        if name.startswith(PREFIX):
            gone = _remove_if_unlocked(path)
        elif name.startswith(_STAGING_PREFIX) or _EARLIER_VERSION.fullmatch(name):
            gone = _idle_seconds(path, now) > UNLOCKED_GRACE_SECONDS and _remove(path)
        else:
            continue
        if gone:
            removed.append(path)
    return removed


def _remove_if_unlocked(path: Path) -> bool:
    try:
        lock_fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:  # no lock: half removed already
        return _remove(path)
    except OSError:
        return False
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # its run is still going
    else:
        return _remove(path)
    finally:
        os.close(lock_fd)


def _remove(path: Path) -> bool:
    size = _size(path)
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        return False
    logger.info("Removed %s left by a tap run that was killed (%d bytes)", path, size)
    return True


def _size(path: Path) -> int:
    total = 0
    for item in path.rglob("*"):
        with contextlib.suppress(OSError):
            total += item.lstat().st_size
    return total


def _idle_seconds(path: Path, now: float) -> float:
    newest = path.lstat().st_mtime
    for item in path.rglob("*"):
        with contextlib.suppress(OSError):
            newest = max(newest, item.lstat().st_mtime)
    return now - newest
