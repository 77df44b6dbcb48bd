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
def claim(path: Path, *names, wait: bool = True, shared: bool = False):
    """A claim on `names` of the file `path`, shared between the processes of one machine: flock on a lock file in
    path's folder (.claims/); yields whether it was got. Exclusive, or `shared` (many shared claims at once, none
    while an exclusive one is held). wait: block until it is got; else yield False when another process holds it.
    The system releases it when the block ends or the process dies, so a killed process leaves no stale claim.
    Where flock is missing (Windows) every claim is got: nothing is shared (`CLAIMS_WORK` is False)."""
    if not CLAIMS_WORK:
        yield True
        return
    folder = Path(path).parent / ".claims"
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / hashlib.sha256("\0".join(map(str, (Path(path).name, *names))).encode()).hexdigest()[:32]
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, mode if wait else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            got = False
        else:
            got = True
        try:
            yield got
        finally:
            if got:
                fcntl.flock(f, fcntl.LOCK_UN)


CLAIMS_WORK = fcntl is not None  # whether processes can share work through `claim`
