"""The plugin's settings (QGIS settings under `specaware/`, `SPECAWARE_*` overrides) and the folders they name."""
from __future__ import annotations

import os
from pathlib import Path

from qgis.core import QgsSettings

from .environment import user_data_dir

WEIGHTS_URL = "https://r2.3sobs.top/share/SpecAware/ckpt/SpecAware_Base_model.pth"
KEYS = {"engine_python": "", "device": "auto", "checkpoint": "", "weights_url": WEIGHTS_URL, "output_dir": ""}


def get(key: str) -> str:
    """A setting; `SPECAWARE_<KEY>` in the environment wins (headless qgis_process runs, servers)."""
    return os.environ.get(f"SPECAWARE_{key.upper()}") or str(QgsSettings().value(f"specaware/{key}", KEYS[key]) or "")


def put(key: str, value) -> None:
    QgsSettings().setValue(f"specaware/{key}", "" if value is None else str(value))


def output_dir() -> Path:
    return Path(get("output_dir") or Path.home() / "SpecAware results")


def weights_dir() -> Path:
    return user_data_dir() / "weights"
