"""A per-user cache of results that are pure functions of their inputs (a validated spec, a
checked calendar filter), so that a command run again skips that work and its imports.

An entry is a file named by its slot (one per spec path, one per filter) that starts with the
key of the inputs it was made from and the sha256 of its payload: it is served only for the
exact same key and an intact payload, so an edited input misses and is checked in full, and so
does an entry a disk or an editor garbled (a payload that still unpickles would otherwise be
served as checked). Reading or writing never fails a command nor waits: an unreadable,
corrupt, foreign or oversized entry, or one that is not a regular file (a FIFO would block the
read forever), is a miss; an unwritable folder is no cache.

Where: $BACKFILL_KIT_CACHE_DIR (set empty: no cache), else $XDG_CACHE_HOME/backfill-kit, else
~/.cache/backfill-kit (the XDG rule, written out: platformdirs costs more to import than a hit saves).

Trust: an entry is served without being checked again, so the folder is made private (0700)
when this module creates it (an existing one, which the variable may name, keeps its
permissions: it may be shared) and an entry is read only if the current user owns it and
nobody else can write it. Whoever can write there can already run code as that user (their
shell's startup files sit in the same home), so a cache entry gives no one a new way around
the checks. It never lives beside the
spec: a spec comes from a repository that others write to.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

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
    """The folder, or None when BACKFILL_KIT_CACHE_DIR is set empty: no cache."""
    configured = os.environ.get("BACKFILL_KIT_CACHE_DIR")
    if configured is not None:
        return Path(configured) if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "backfill-kit"


def read_entry(slot: str, key: str | None) -> bytes | None:
    """The payload stored in `slot` for exactly `key`, or None (always, for no key)."""
    if key is None or (folder := cache_dir()) is None:
        return None
    try:
        # Non-blocking: opening a FIFO for reading would otherwise wait for a writer forever.
        with os.fdopen(os.open(folder / slot, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
            info = os.fstat(file.fileno())
            if info.st_uid != os.getuid() or info.st_mode & 0o022:  # someone else's, or writable by others
                return None
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_ENTRY_BYTES:
                return None
            data = file.read(MAX_ENTRY_BYTES + 1)
    except OSError:
        return None
    header, payload = data[:_HEADER_BYTES], data[_HEADER_BYTES:]
    if header != _header(key, payload):
        return None
    return payload


def _header(key: str, payload: bytes) -> bytes:
    return key.encode() + b" " + hashlib.sha256(payload).hexdigest().encode() + b"\n"


def write_entry(slot: str, key: str | None, payload: bytes) -> None:
    """Store `payload` for `key` in `slot`, atomically: a reader sees the old entry or the new."""
    if key is None or (folder := cache_dir()) is None:
        return
    import tempfile  # only on a miss

    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{slot}.")  # created 0600
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(_header(key, payload) + payload)
            os.replace(temp, folder / slot)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        _prune(folder)
    except OSError:
        return  # no cache is only slower


# The names write_entry gives: a kind, a dash and 32 hex digits (spec-..., filter-...).
_ENTRY_NAME = re.compile(r"[a-z]+-[0-9a-f]{32}")


def _prune(folder: Path) -> None:
    """Keep the newest MAX_ENTRIES: a slot per spec path, and temporary folders come and go.
    Only the cache's own entries are counted and removed: the variable may name a folder that
    holds other files too (a home, /tmp), and those are never touched."""
    entries = [(entry.stat().st_mtime, entry) for entry in folder.iterdir() if _ENTRY_NAME.fullmatch(entry.name)]
    for _, stale in sorted(entries, reverse=True)[MAX_ENTRIES:]:
        stale.unlink(missing_ok=True)
