"""Build and find ``agentos-stage``, the small C step every sandboxed agent is exec'd through.

``stage.c`` says what it does and why it is C. It is compiled on first use with the host's C
compiler (``$CC``, ``cc``, ``gcc`` or ``clang``; static when the static libc is installed, so the
sandbox needs nothing of the host's libraries for it) into ``$XDG_CACHE_HOME/agentos`` (default
``~/.cache/agentos``), named by the hash of its source, written to a temporary name and renamed, so
concurrent first uses are safe and an edited source is rebuilt. ``AGENTOS_STAGE`` names a prebuilt
binary instead (packagers, hosts without a compiler).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("stage.c")


class StageUnavailable(RuntimeError):
    """No stage binary and no way to build one; the message says why."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "agentos"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and (found := shutil.which(name)):
            return found
    return None


@functools.cache
def stage_path() -> str:
    """The stage binary's path, building it if needed; raises StageUnavailable."""
    if prebuilt := os.environ.get("AGENTOS_STAGE"):
        if not os.access(prebuilt, os.X_OK):
            raise StageUnavailable(f"AGENTOS_STAGE={prebuilt} is not an executable file")
        return prebuilt
    source = SOURCE.read_bytes()
    target = cache_dir() / f"agentos-stage-{hashlib.sha256(source).hexdigest()[:16]}"
    if os.access(target, os.X_OK):
        return str(target)
    cc = _compiler()
    if cc is None:
        raise StageUnavailable("no C compiler (cc, gcc, clang) to build agentos-stage; set AGENTOS_STAGE")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".stage-", dir=target.parent)
    os.close(fd)
    errors = []
    try:
        for extra in (["-static"], []):  # static first: no dependency on the sandbox's libc
            cmd = [cc, "-O2", "-Wall", *extra, "-o", tmp, str(SOURCE)]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if done.returncode == 0:
                os.chmod(tmp, 0o755)
                os.replace(tmp, target)
                return str(target)
            errors.append(done.stderr.strip()[-400:])
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    raise StageUnavailable(f"building agentos-stage failed: {errors[-1]}")
