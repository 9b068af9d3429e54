"""Where the engine keeps things: the user data dir (models, resume state), the config dir (settings, custom
sensor profiles) and the checkpoint the user configured."""
from __future__ import annotations

import json
import os
from pathlib import Path

import platformdirs

from .errors import EngineError, shorten


def data_dir() -> Path:
    """The engine's user data dir (`SPECAWARE_DATA_DIR` overrides it, e.g. for tests)."""
    if os.environ.get("SPECAWARE_DATA_DIR"):
        return Path(os.environ["SPECAWARE_DATA_DIR"])
    return Path(platformdirs.user_data_dir("specaware", appauthor=False))


def models_dir() -> Path:
    return data_dir() / "models"


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir("specaware", appauthor=False))


def configured_checkpoint() -> Path | None:
    """The official checkpoint the user pointed the engine at: `SPECAWARE_CHECKPOINT`, else `settings.json`."""
    value = os.environ.get("SPECAWARE_CHECKPOINT")
    if not value:
        settings = config_dir() / "settings.json"
        if settings.is_file():
            try:
                value = json.loads(settings.read_text()).get("checkpoint")
            except ValueError as e:
                raise EngineError(f"{settings} is not valid JSON ({e}); fix or delete it") from e
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise EngineError(f"the configured SpecAware checkpoint {shorten(path)} does not exist; download "
                          "SpecAware_Base_model.pth again or change the setting")
    return path
