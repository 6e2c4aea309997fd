"""Writing a file the user named (a plan, a drafted spec, a report, the demo warehouse) whole
or not at all, replacing only a regular file and never writing through a link.

The new content goes to a temporary file of its own in the target's folder (created afresh,
O_EXCL, under a name no one can guess), is flushed to disk, then renamed over the target:
a crash leaves the old file or the new, never half of one, and a link planted at a
predictable temporary name (`plan.json.tmp`) is never followed. The target itself must be
missing or a regular file: a device (`--out /dev/null`, as root), a FIFO, a folder or a link
is refused with one message naming it, and nothing is written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from backfill_kit.errors import OutputError

__all__ = ["replacing", "write_output"]


def write_output(path: Path, content: bytes | str, *, what: str, hint: str) -> None:
    """Write `content` (text as UTF-8) to `path` as described above. `what` names the file in
    a refusal ("the plan"), `hint` says what to do ("choose a writable place with --out")."""
    data = content.encode() if isinstance(content, str) else content
    _check_target(path, what, hint)
    temp = None
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            os.fchmod(file.fileno(), _new_file_mode())  # as open() would make it; mkstemp's is 0600
            file.flush()
            os.fsync(file.fileno())
        _commit(Path(temp), path, what, hint)
    except OSError as exc:
        raise _cannot(path, what, hint, exc) from exc
    finally:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)  # gone once renamed; left behind only by a failure


@contextlib.contextmanager
def replacing(path: Path, *, what: str, hint: str) -> Iterator[Path]:
    """A fresh path, in a private folder made for it beside `path`, for a writer that opens
    files by name (DuckDB): what it leaves there replaces `path` when the block ends cleanly."""
    _check_target(path, what, hint)
    try:
        folder = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))  # 0700: no one else's
    except OSError as exc:
        raise _cannot(path, what, hint, exc) from exc
    try:
        yield folder / path.name
        try:
            _fsync(folder / path.name)
            _commit(folder / path.name, path, what, hint)
        except OSError as exc:
            raise _cannot(path, what, hint, exc) from exc
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _check_target(path: Path, what: str, hint: str) -> None:
    """Refuse a target that is anything but a regular file or nothing yet; make its folder."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _cannot(path, what, hint, exc) from exc
        return
    except OSError as exc:
        raise _cannot(path, what, hint, exc) from exc
    if not stat.S_ISREG(info.st_mode):
        raise _refused(path, what, hint, f"it is {_kind(info.st_mode)}, not a regular file")


def _commit(temp: Path, path: Path, what: str, hint: str) -> None:
    """Rename the finished file over the target (checked again: it may have changed while the
    content was made), then flush the folder, so that the rename itself survives a crash."""
    _check_target(path, what, hint)
    os.replace(temp, path)  # replaces a link put there since, never what it points to
    with contextlib.suppress(OSError):  # a folder that cannot be opened or synced: the file is written
        _fsync(path.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    kinds = [
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "not a file")


def _cannot(path: Path, what: str, hint: str, exc: OSError) -> OutputError:
    return _refused(path, what, hint, exc.strerror or str(exc))


def _refused(path: Path, what: str, hint: str, reason: str) -> OutputError:
    return OutputError(f"cannot write {what} {path}: {reason}; {hint}", reason)


def _new_file_mode() -> int:
    """0666 less the process's umask, read without changing it (os.umask sets as it reads,
    which another thread could see): from /proc on Linux, else set and put back."""
    with contextlib.suppress(OSError, ValueError, StopIteration), open("/proc/self/status", encoding="ascii") as status:
        return 0o666 & ~int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask
