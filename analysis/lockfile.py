"""Who writes a recording: a lock file beside it, and the temporary file a run writes first.

`take_lock(path)` creates `NAME.h5.lock` exclusively, holding the writer's pid and host. A lock
whose writer is gone — a dead pid on this host — is stale and is taken over, together with the
temporary file that writer left (`temp_path`); a lock held from another host is never taken
over, since its pid cannot be checked from here (a sweep on a shared filesystem).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def lock_path(path) -> Path:
    """The lock file that marks `path` as being written: `NAME.h5.lock` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def temp_path(path: Path, pid: int) -> Path:
    """Where the writer with `pid` writes `path` until the run has started cleanly."""
    return path.with_name(f".{path.name}.{pid}.tmp")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _owner(lock: Path) -> tuple[int | None, str | None]:
    """(pid, host) written in a lock; (None, None) while its creator is still writing it."""
    parts = lock.read_text().split()
    try:
        return int(parts[0]), (parts[1] if len(parts) > 1 else None)
    except (IndexError, ValueError):
        return None, None


def take_lock(path: Path) -> Path:
    """Create the lock file of `path` holding this process's pid and host; a stale lock is taken
    over (and its temporary file removed). ValueError naming the path and the holder."""
    lock, host = lock_path(path), socket.gethostname()
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid, owner_host = _owner(lock)
            except FileNotFoundError:
                continue  # released meanwhile
            except OSError:
                pid, owner_host = None, None
            here = owner_host in (None, host)
            if pid is None or not here or _pid_alive(pid):
                where = "" if here else f" on {owner_host}"
                raise ValueError(
                    f"{path} is being written by another run (pid {pid or 'unknown'}{where}; lock "
                    f"file {lock}); wait for it to finish, or delete {lock} if that run is gone"
                ) from None
            lock.unlink(missing_ok=True)
            temp_path(path, pid).unlink(missing_ok=True)
            continue
        except OSError as error:
            raise ValueError(f"cannot write recording {path}: {error}") from None
        with os.fdopen(fd, "w") as file:
            file.write(f"{os.getpid()} {host}\n")
        return lock
    raise ValueError(f"cannot take the lock {lock} of {path}: other runs keep taking it")
