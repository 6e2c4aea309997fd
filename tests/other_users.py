"""Commands run as another user, for the cases a shared machine brings: a second real uid that
plants files where we look, and a uid with no passwd entry (a container's, `docker run -u`).

We are root here and in CI; elsewhere these skip with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["NOBODY", "NO_PASSWD_ENTRY", "another_user", "shared_folder", "uid_without_passwd_entry"]

NOBODY = 65534
NO_PASSWD_ENTRY = 54321  # a uid /etc/passwd does not list


def _works(prefix: Sequence[str], *argv: str) -> bool:
    try:
        return subprocess.run([*prefix, *argv], capture_output=True, timeout=30).returncode == 0
    except OSError:
        return False


def another_user(uid: int = NOBODY) -> list[str]:
    """The argv prefix that runs a command as the real uid `uid` (its group the same number, no
    other groups): what it creates is that user's. Skips where the machine cannot."""
    if os.geteuid() != 0:
        pytest.skip("running a command as another user needs root (setpriv or runuser)")
    if shutil.which("setpriv"):
        prefix = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        if _works(prefix, "true"):
            return prefix
    if shutil.which("runuser") and uid == NOBODY and _works(["runuser", "-u", "nobody", "--"], "true"):
        return ["runuser", "-u", "nobody", "--"]
    pytest.skip("neither setpriv nor runuser can run a command as another user here")


def uid_without_passwd_entry() -> tuple[list[str], int]:
    """The argv prefix that runs this test's Python as a uid with no passwd entry, and the uid
    that owns, as the system sees it, what that process creates. A real uid (setpriv) when that
    uid can run the interpreter; else a user namespace mapping us to it (unshare): the
    process's uid has no entry, though its files are still ours."""
    import pwd

    try:
        pwd.getpwuid(NO_PASSWD_ENTRY)
        pytest.skip(f"uid {NO_PASSWD_ENTRY} has a passwd entry here")
    except KeyError:
        pass
    candidates = []
    if os.geteuid() == 0 and shutil.which("setpriv"):
        setpriv = ["setpriv", f"--reuid={NO_PASSWD_ENTRY}", f"--regid={NO_PASSWD_ENTRY}", "--clear-groups"]
        candidates.append((setpriv, NO_PASSWD_ENTRY))
    if shutil.which("unshare"):
        unshare = ["unshare", "--user", f"--map-user={NO_PASSWD_ENTRY}", f"--map-group={NO_PASSWD_ENTRY}"]
        candidates.append((unshare, os.geteuid()))
    for prefix, owner in candidates:
        if _works(prefix, sys.executable, "-c", "import backfill_kit"):
            return prefix, owner
    pytest.skip(f"cannot run {sys.executable} as a uid with no passwd entry (setpriv, unshare)")


@contextmanager
def shared_folder(mode: int = 0o755) -> Iterator[Path]:
    """A fresh folder under the system's temporary folder, with `mode`: pytest's own are
    private (0700), so no other user could reach a file inside them."""
    folder = Path(tempfile.mkdtemp(prefix="backfill-kit-shared-"))
    try:
        folder.chmod(mode)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
