"""Plain files written safely (temp file, then rename) and disk errors as sentences. No GDAL here, so
pre-training on a GPU node without GDAL can use it."""
from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

from .errors import EngineError, shorten


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


def disk_error(e: OSError, path: Path) -> EngineError:
    """An OSError while writing `path`, as a sentence that says what to do."""
    if getattr(e, "errno", None) == errno.ENOSPC or "No space left" in str(e):
        return EngineError(f"the disk holding {shorten(path.parent)} is full; nothing was kept. Free some space "
                           "or choose another output folder")
    return EngineError(f"cannot write {shorten(path)} ({getattr(e, 'strerror', None) or e}); choose another "
                       "output folder")
