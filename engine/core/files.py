"""Plain files written safely (temp file, then rename) and disk errors as sentences. No GDAL here, so
pre-training on a GPU node without GDAL can use it."""
from __future__ import annotations

import errno
import os
import re
import shutil
import sys
import time
import uuid
from pathlib import Path

from .errors import EngineError, shorten

SCRATCH_PREFIX = ".specaware-run-"
SCRATCH_RE = re.compile(r"^\.specaware-run-(\d+)-[0-9a-f]{8}$")
LEGACY_TMP_RE = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp(\.tif|\.gpkg|\.tif\.aux\.xml)?$")  # older versions' temp files
STALE_SECONDS = 2 * 24 * 3600  # a scratch folder this old is dead even if its process id was reused


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write through a temp file in the same folder and rename, so a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise disk_error(e, path) from e
    return path


def disk_full(folder: Path, margin: int = 16 * 2**20) -> bool:
    """Whether the disk holding `folder` (or its nearest existing parent) has less than `margin` bytes free."""
    for f in [Path(folder), *Path(folder).parents]:
        if f.exists():
            return shutil.disk_usage(f).free < margin
    return False


def disk_error(e: OSError, path: Path) -> EngineError:
    """An OSError while writing `path`, as a sentence that says what to do."""
    if getattr(e, "errno", None) == errno.ENOSPC or "No space left" in str(e) or disk_full(path.parent):
        return EngineError(f"the disk holding {shorten(path.parent)} is full; nothing was kept. Free some space "
                           "or choose another output folder")
    return EngineError(f"cannot write {shorten(path)} ({getattr(e, 'strerror', None) or e}); choose another "
                       "output folder")


def scratch_dir(parent: Path) -> Path:
    """A new hidden scratch folder in `parent`, named after this process; those of dead runs there are removed."""
    remove_dead_scratch(parent)
    path = parent / f"{SCRATCH_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def _pid_alive(pid: int) -> bool:
    if sys.platform == "win32":  # os.kill(pid, 0) is not a probe there; rely on age
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_scratch(folder: Path) -> list[Path]:
    """Remove the scratch folders (and older versions' temp files) that runs no longer alive left in `folder`."""
    removed = []
    now = time.time()
    for p in folder.iterdir() if folder.is_dir() else []:
        m = SCRATCH_RE.match(p.name)
        try:
            age = now - p.stat().st_mtime
        except OSError:
            continue
        if m and p.is_dir() and (not _pid_alive(int(m.group(1))) or age > STALE_SECONDS):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
        elif LEGACY_TMP_RE.match(p.name) and age > 600:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed
