"""The agent's state directory: one agent at a time, and state only for the agent it belongs to.

Two agents sharing ``state_dir`` (the default ``/var/lib/nfq-mip6`` for every agent on a host,
network namespaces included) would share one SQLite database: a new Home Agent would adopt the
bindings of another one and answer a new MN's first Binding Update with 135. Two guards:

* :class:`StateDirectoryLock` — an exclusive ``flock(2)`` on ``<state_dir>/nfq-mip6.lock``,
  taken by ``nfq-mip6 run`` before the role starts and held for the agent's life (the kernel
  drops it when the process exits, kill -9 included). The file holds the holder's PID; a
  second agent on the same directory gets :class:`StateDirectoryBusy` naming the directory and
  that PID and exits 1.
* :func:`open_state` — the database records the identity of the agent that wrote it (role and
  what makes its state meaningful: the HA's home interface and prefix, the MN's home address).
  A database written for another identity is not restored: the agent logs it, renames the file
  aside (``nfq-mip6.sqlite3.<role>-<UTC time>.aside``, never deleted) and starts empty. A
  database without an identity (written before identities were recorded) is adopted.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from nfq_mip6.store import DATABASE_NAME, StateStore, StoreError

__all__ = [
    "IDENTITY_KEY",
    "LOCK_NAME",
    "StateDirectoryBusy",
    "StateDirectoryLock",
    "open_state",
]

log = logging.getLogger("nfq_mip6.statedir")

LOCK_NAME: Final = "nfq-mip6.lock"
IDENTITY_KEY: Final = "state.identity"
_SQLITE_SIDE_FILES: Final = ("-wal", "-shm")


class StateDirectoryBusy(StoreError):
    """Another agent holds the state directory's lock."""

    def __init__(self, directory: Path, pid: int | None) -> None:
        self.directory = directory
        self.pid = pid
        holder = f"PID {pid}" if pid is not None else "a process whose PID is not recorded"
        super().__init__(
            f"state directory {directory} is in use by another nfq-mip6 agent ({holder}); "
            "give each agent its own state_dir"
        )


class StateDirectoryLock:
    """The exclusive lock on one state directory, held until :meth:`release` (or exit).

    Raises :class:`StateDirectoryBusy` when another process holds it and ``OSError`` when the
    directory or lock file cannot be created.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = self.directory / LOCK_NAME
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise StateDirectoryBusy(self.directory, pid) from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        """Drop the lock (the file stays; its PID is stale once unlocked)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None

    def __enter__(self) -> StateDirectoryLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def open_state(
    state_dir: Path, identity: Mapping[str, str], *, wall: float | None = None
) -> StateStore:
    """The state database of ``state_dir`` for the agent described by ``identity``.

    A database recorded for another identity is renamed aside (with its WAL) and a new,
    empty one is opened; the identity is recorded in a new or adopted database. Raises
    :class:`StoreError` as :class:`StateStore` does.
    """
    wanted = {str(k): str(v) for k, v in identity.items()}
    path = Path(state_dir) / DATABASE_NAME
    store = StateStore(path)
    recorded = store.get_value(IDENTITY_KEY)
    if recorded == wanted:
        return store
    if recorded is None:
        store.set_value(IDENTITY_KEY, wanted)
        return store
    store.close()
    aside = _move_aside(path, wanted.get("role", "agent"), time.time() if wall is None else wall)
    log.warning(
        "%s was written for %s, not for this agent (%s): moved aside to %s, starting with "
        "empty state",
        path, _describe(recorded), _describe(wanted), aside.name,
    )  # fmt: skip
    store = StateStore(path)
    store.set_value(IDENTITY_KEY, wanted)
    return store


def _move_aside(path: Path, role: str, wall: float) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(wall))
    aside = path.with_name(f"{path.name}.{role}-{stamp}.aside")
    serial = 1
    while aside.exists():
        serial += 1
        aside = path.with_name(f"{path.name}.{role}-{stamp}-{serial}.aside")
    try:
        path.rename(aside)
        for suffix in _SQLITE_SIDE_FILES:  # left only if the last close did not checkpoint
            side = path.with_name(path.name + suffix)
            if side.exists():
                side.rename(aside.with_name(aside.name + suffix))
    except OSError as exc:
        raise StoreError(f"{path}: cannot move aside: {exc}") from exc
    return aside


def _describe(identity: object) -> str:
    if isinstance(identity, Mapping):
        return ", ".join(f"{k} {v}" for k, v in sorted(identity.items()))
    return repr(identity)
