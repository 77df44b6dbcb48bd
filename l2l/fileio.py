"""Files written whole or not at all, and work claimed by one process at a time."""
from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then move tmp_path onto path in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def claim(*names, wait: bool = True):
    """An exclusive claim on `names`, shared between the processes of this machine (a lock file in the temporary
    folder, locked with flock); yields whether it was got: always after waiting for it when `wait`, else False
    when another process holds it. The system releases it when the block ends or the process dies, so a killed
    process leaves no stale claim. Where flock is missing (Windows) every claim is got: nothing is shared."""
    if fcntl is None:
        yield True
        return
    folder = Path(tempfile.gettempdir()) / f"l2l-claims-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    path = folder / hashlib.sha256("\0".join(map(str, names)).encode()).hexdigest()[:32]
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            got = False
        else:
            got = True
        try:
            yield got
        finally:
            if got:
                fcntl.flock(f, fcntl.LOCK_UN)
