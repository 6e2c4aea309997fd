"""A per-user cache of results that are pure functions of their inputs (a validated spec, a
checked calendar filter), so that a command run again skips that work and its imports.

An entry is a file named by its slot (one per spec path, one per filter) that starts with the
key of the inputs it was made from and the sha256 of its payload: it is served only for the
exact same key and an intact payload, so an edited input misses and is checked in full, and so
does an entry a disk or an editor garbled. A payload is data (JSON), never code: its reader
rebuilds what it expects from it and refuses anything else. Reading or writing never fails a
command nor waits: an unreadable, corrupt, foreign or oversized entry, or one that is not a
regular file (a FIFO would block the read forever), is a miss; an unwritable folder is no cache.

Where: $BACKFILL_KIT_CACHE_DIR (set empty: no cache), else $XDG_CACHE_HOME/backfill-kit, else
~/.cache/backfill-kit (the XDG rule, written out: platformdirs costs more to import than a hit
saves); with neither a HOME nor a passwd entry to say where ~ is, no cache.

Trust: an entry is served without being checked again, so only a folder that is the user's own
and that no one else can write is used (made 0700 when this module creates it), opened without
following a link, and each entry inside it likewise, through the folder's descriptor: a folder
swapped for another after the check is never read. Any other folder (one the variable names
in /tmp, a shared one, a link) means no cache, said once per process as a warning. It never
lives beside the spec: a spec comes from a repository that others write to.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from backfill_kit.errors import BackfillKitWarning

__all__ = ["cache_key", "installed_file_text", "read_entry", "sources_key", "write_entry"]

_KEY_BYTES = 64  # a sha256 in hex
# An entry's first line: the key, a space, the payload's sha256 (both in hex).
_HEADER_BYTES = 2 * _KEY_BYTES + 2
MAX_ENTRIES = 256  # a few kilobytes each
MAX_ENTRY_BYTES = 64 << 20  # far above a checked spec of the largest file the loader accepts


def cache_key(*parts: str | bytes) -> str:
    """The sha256 of the parts, each length-prefixed so that no two lists of parts collide."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(b"%d:" % len(data))
        digest.update(data)
    return digest.hexdigest()


def sources_key(files: Iterable[Path]) -> str | None:
    """The key of some source files' text (a changed rule in a checker misses every entry), or
    None if one cannot be read: then there is no key, and no cache."""
    try:
        return cache_key(*(p.read_bytes() for p in sorted(files)))
    except OSError:
        return None


def installed_file_text(package: str, name: str) -> str | None:
    """The text of the file `name` in an installed package, found without importing the
    package (which can cost more than a cache hit saves); None when there is none. A
    package's version module identifies it for a key: cheaper than its metadata (30 ms)."""
    from importlib.util import find_spec

    found = find_spec(package)
    if found is None or found.origin is None:
        return None
    try:
        return Path(found.origin).with_name(name).read_text(encoding="utf-8")
    except OSError:
        return None


def cache_dir() -> Path | None:
    """The folder, or None: BACKFILL_KIT_CACHE_DIR set empty, or no home to put it in."""
    configured = os.environ.get("BACKFILL_KIT_CACHE_DIR")
    if configured is not None:
        return Path(configured) if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or _home_cache()
    return Path(base) / "backfill-kit" if base else None


def _home_cache() -> str | None:
    """~/.cache, ~ being $HOME, else the user's passwd entry; None when neither says (a uid
    with no entry, in a container or under `env -i`), or says something relative: the cache
    must not land in the working directory, beside a spec."""
    home = os.path.expanduser("~")
    return os.path.join(home, ".cache") if os.path.isabs(home) else None


# Open flags: never follow a link at the last step, never block (a FIFO), never leak to a job.
_NO_LINK = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


@contextlib.contextmanager
def _trusted_folder(create: bool) -> Iterator[int | None]:
    """The cache folder's descriptor, when it is the user's own and no one else can write it;
    None when there is no cache, no folder yet (`create` makes it) or one not to trust."""
    folder = cache_dir()
    if folder is None:
        yield None
        return
    try:
        if create:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | _NO_LINK)
    except OSError as exc:  # missing is no cache yet; a file, or unreadable, is no cache
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and folder.is_symlink():
            _distrust(folder, "is a link")
        yield None
        return
    try:
        info = os.fstat(fd)
        why = (
            "belongs to another user"
            if info.st_uid != os.getuid()
            else "can be written by other users"
            if info.st_mode & 0o022
            else None
        )
        if why:
            _distrust(folder, why)
        yield None if why else fd
    finally:
        os.close(fd)


_distrusted: set[Path] = set()


def _distrust(folder: Path, why: str) -> None:
    """Say once per process why a cache folder goes unused, and what to do."""
    if folder in _distrusted:
        return
    _distrusted.add(folder)
    import warnings

    warnings.warn(
        f"the cache folder {folder} {why}, so its entries could be anyone's: running without a cache. "
        "Use a folder of your own that only you can write (BACKFILL_KIT_CACHE_DIR=PATH; empty: no cache)",
        BackfillKitWarning,
        stacklevel=2,
    )


def read_entry(slot: str, key: str | None) -> bytes | None:
    """The payload stored in `slot` for exactly `key`, or None (always, for no key)."""
    if key is None:
        return None
    with _trusted_folder(create=False) as folder:
        data = None if folder is None else _read(folder, slot)
    if data is None:
        return None
    header, payload = data[:_HEADER_BYTES], data[_HEADER_BYTES:]
    if header != _header(key, payload):
        return None
    return payload


def _read(folder: int, slot: str) -> bytes | None:
    try:
        with os.fdopen(os.open(slot, os.O_RDONLY | _NO_LINK, dir_fd=folder), "rb") as file:
            info = os.fstat(file.fileno())
            if info.st_uid != os.getuid() or info.st_mode & 0o022:  # someone else's, or writable by others
                return None
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_ENTRY_BYTES:
                return None
            return file.read(MAX_ENTRY_BYTES + 1)
    except OSError:
        return None


def _header(key: str, payload: bytes) -> bytes:
    return key.encode() + b" " + hashlib.sha256(payload).hexdigest().encode() + b"\n"


def write_entry(slot: str, key: str | None, payload: bytes) -> None:
    """Store `payload` for `key` in `slot`, atomically: a reader sees the old entry or the new."""
    if key is None:
        return
    with _trusted_folder(create=True) as folder:
        if folder is None:
            return
        temp = f".{slot}.{os.urandom(8).hex()}"  # a name of its own, created afresh (O_EXCL)
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_LINK, 0o600, dir_fd=folder)
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(_header(key, payload) + payload)
                os.replace(temp, slot, src_dir_fd=folder, dst_dir_fd=folder)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp, dir_fd=folder)
                raise
            _prune(folder)
        except OSError:
            return  # no cache is only slower


# The names write_entry gives: a kind, a dash and 32 hex digits (spec-..., filter-...).
_ENTRY_NAME = re.compile(r"[a-z]+-[0-9a-f]{32}")


def _prune(folder: int) -> None:
    """Keep the newest MAX_ENTRIES: a slot per spec path, and temporary folders come and go.
    Only the cache's own entries are counted and removed: the variable may name a folder that
    holds other files too (a home), and those are never touched."""
    with os.scandir(folder) as listing:
        entries = [
            (entry.stat(follow_symlinks=False).st_mtime, entry.name)
            for entry in listing
            if _ENTRY_NAME.fullmatch(entry.name)
        ]
    for _, stale in sorted(entries, reverse=True)[MAX_ENTRIES:]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale, dir_fd=folder)
