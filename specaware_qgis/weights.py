"""Getting the published SpecAware-Base checkpoint: a resumable download, checked by the engine, then selected."""
from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from qgis.core import QgsTask

from .client import EngineJobError

CHUNK = 1 << 20
ATTEMPTS = 4


class DownloadError(Exception):
    pass


def download(url: str, dest: Path, progress: Callable[[float, str], None],
             is_cancelled: Callable[[], bool], timeout: float = 30.0) -> Path:
    """Fetch `url` into `dest` through `dest.part`, resuming with HTTP Range after an interruption."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error = ""
    for _ in range(ATTEMPTS):
        have = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": "specaware-qgis", **({"Range": f"bytes={have}-"} if have else {})}
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
                total = _total(resp, have)
                if resp.status == 200 and have:
                    have = 0  # the server ignored Range: start over
                with open(part, "ab" if have else "wb") as f:
                    got = have
                    while True:
                        if is_cancelled():
                            raise DownloadError(f"cancelled; {got} bytes kept in {part} for the next try")
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        f.write(block)
                        got += len(block)
                        progress(got / total if total else 0.0, f"{got / 1e6:.1f} of "
                                 f"{total / 1e6:.1f} MB" if total else f"{got / 1e6:.1f} MB")
            if total is None or part.stat().st_size == total:
                os.replace(part, dest)
                return dest
            last_error = f"the transfer stopped at {part.stat().st_size} of {total} bytes"
        except urllib.error.HTTPError as e:
            if e.code == 416 and part.exists():  # asked past the end: what we hold is the whole file
                os.replace(part, dest)
                return dest
            raise DownloadError(f"{url} answered HTTP {e.code} ({e.reason}); check the weights address in the "
                                "settings, or use a file you already have") from e
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            last_error = str(getattr(e, "reason", e))
    raise DownloadError(f"could not download {url}: {last_error}. What arrived is kept in {part}; try again to "
                        "resume, or use a file you already have")


def _total(resp, have: int) -> int | None:
    if resp.status == 206:
        m = re.match(r"bytes (\d+)-\d+/(\d+)", resp.headers.get("Content-Range", ""))
        if not m or int(m.group(1)) != have:
            raise DownloadError(f"the server resumed at the wrong place ({resp.headers.get('Content-Range')})")
        return int(m.group(2))
    length = resp.headers.get("Content-Length")
    return int(length) if length else None


class WeightsTask(QgsTask):
    """Download (or take a local file), check it is a SpecAware checkpoint with the engine, report its shape."""

    def __init__(self, url: str, folder: Path, engine, path: str | None = None):
        super().__init__("SpecAware: get weights" if path is None else "SpecAware: check weights", QgsTask.CanCancel)
        self.url, self.folder, self.engine = url, Path(folder), engine
        self.path = path
        self.summary: dict | None = None
        self.error: str | None = None
        self.on_done = None

    def run(self) -> bool:
        downloaded = self.path is None
        try:
            if downloaded:
                name = Path(urllib.request.urlparse(self.url).path).name or "SpecAware_Base_model.pth"
                self.path = str(download(self.url, self.folder / name,
                                         lambda f, m: self.setProgress(95 * f), self.isCanceled))
            self.summary, _ = self.engine.run("inspect-weights", {"path": self.path}, is_cancelled=self.isCanceled)
            return True
        except (DownloadError, EngineJobError) as e:
            self.error = f"SpecAware weights: {e}"
            if downloaded and self.path and isinstance(e, EngineJobError) and not e.cancelled:
                Path(self.path).unlink(missing_ok=True)  # not a checkpoint: never select it
        return False

    def finished(self, ok: bool) -> None:
        if not ok and self.error is None:
            self.error = "SpecAware weights: cancelled"
        if self.on_done:
            self.on_done(self)
