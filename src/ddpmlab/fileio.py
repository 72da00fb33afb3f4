"""Atomic file writes: a file is either its old content or its complete new content.

Every file ddpmlab writes goes through :func:`write_atomic`: the content is written to a
temporary sibling, flushed to disk, and renamed onto the target (``os.replace`` is atomic on
POSIX and Windows). A crash or a kill at any moment leaves no half-written file behind; a
kill (SIGKILL, power loss) can leave the temporary sibling, which
:func:`remove_stale_temps` deletes once its writer is gone.

:func:`exclusive` keeps two processes from writing into one folder at once (two trainings of
one run, or a training and a ``figures``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ddpmlab import distributed
from ddpmlab.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the folder is not guarded there
    fcntl = None  # type: ignore[assignment]

# temporary sibling of NAME.SUFFIX: NAME.<writer pid>-<8 hex digits>.tmp.SUFFIX
_TEMP = re.compile(r"\.(\d+)-[0-9a-f]{8}\.tmp(\.|$)")


def write_atomic(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, fsync it, rename it onto ``path``."""
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is not None and str(e.filename) == str(tmp):
            e.filename = str(path)  # name the file the caller asked for, not the temporary
        raise
    return path


def save_npy(x: np.ndarray, path: Path) -> None:
    """``x`` as .npy at ``path`` exactly (np.save would append ".npy" to "x.NPY")."""
    with open(path, "wb") as f:
        np.save(f, x)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    return write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    return write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (on Windows, os.kill would end it: say no, since
    a file still open there cannot be deleted anyway)."""
    if os.name == "nt":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that killed writers left in ``folder``; return them.

    Only names made by :func:`write_atomic` whose writing process is gone are touched, so a
    write in progress in another process keeps its file.
    """
    removed = []
    for p in sorted(Path(folder).iterdir()):
        m = _TEMP.search(p.name)
        if m and p.is_file() and not _alive(int(m.group(1))):
            try:
                p.unlink()
            except OSError:
                continue
            removed.append(p)
    return removed


_held: dict[Path, int] = {}  # folders this process has locked -> nesting depth
_held_lock = threading.Lock()


@contextmanager
def exclusive(folder: str | os.PathLike[str], what: str = "run") -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (which must exist) for the block.

    Another process holding it makes this raise a UserError at once, never wait. The lock is
    ``flock`` on the folder itself: no lock file is left behind, and the kernel releases it
    when its process ends, even by SIGKILL, so a killed process cannot leave it stuck. The
    same process may nest blocks on one folder (training evaluates, which draws figures).
    Under torchrun only rank 0 writes, and takes the lock; the other ranks pass.
    """
    if not distributed.current().main:
        yield
        return
    path = Path(folder).resolve()
    with _held_lock:
        if path in _held:
            _held[path] += 1
            fd = None
        else:
            fd = _lock(path, what)
            _held[path] = 1
    try:
        yield
    finally:
        with _held_lock:
            _held[path] -= 1
            if _held[path] == 0:
                del _held[path]
                if fd is not None:
                    os.close(fd)  # closing the descriptor releases the flock


def _lock(path: Path, what: str) -> int | None:
    if fcntl is None:
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(f"{path} is in use by another ddpmlab process (a training, figures or "
                        f"evaluation of this {what}); wait for it to end, or stop it") from None
    return fd
