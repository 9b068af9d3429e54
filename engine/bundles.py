"""Model bundles: one folder per fine-tuned model under the user data dir, holding `weights.pt` (a plain state
dict, read with `weights_only=True`) and `model.json` (classes, sensor profile, preset, head, provenance, metrics).

Bundles are written into a hidden temp folder and renamed into place, so a failed or cancelled run leaves none.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch

from . import __version__
from .errors import EngineError

WEIGHTS, META = "weights.pt", "model.json"
REQUIRED = ("preset_config", "head", "classes", "profile", "tile")


def data_dir() -> Path:
    """The engine's user data dir (`SPECAWARE_DATA_DIR` overrides it, e.g. for tests)."""
    if os.environ.get("SPECAWARE_DATA_DIR"):
        return Path(os.environ["SPECAWARE_DATA_DIR"])
    import platformdirs
    return Path(platformdirs.user_data_dir("specaware", appauthor=False))


def models_dir() -> Path:
    return data_dir() / "models"


def check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name or ""):
        raise EngineError(f"model name {name!r} may use letters, digits, '_', '-' and '.', starting with a letter "
                          "or digit")
    return name


@dataclass
class Bundle:
    path: Path
    meta: dict

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def cache_key(self) -> str:
        """Changes when the weights are rewritten, so a worker never keeps a stale model."""
        return f"bundle:{self.path.resolve()}:{(self.path / WEIGHTS).stat().st_mtime_ns}"

    def state_dict(self) -> dict[str, torch.Tensor]:
        try:
            return torch.load(self.path / WEIGHTS, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises many types for damaged files
            raise EngineError(f"model {self.path}: {WEIGHTS} cannot be read ({str(e).splitlines()[0]}); the bundle "
                              "is damaged: fine-tune it again or restore it from a backup") from e

    def build(self):
        """The Segmenter with the bundle's weights, in eval mode on the CPU."""
        from .model.config import SpecAwareConfig
        from .model.segmenter import build_segmenter
        m = self.meta
        model = build_segmenter(SpecAwareConfig.from_dict(m["preset_config"]), m["head"], len(m["classes"]["names"]),
                                m.get("task", "pixels"))
        try:
            model.load_state_dict(self.state_dict(), strict=True)
        except RuntimeError as e:
            raise EngineError(f"model {self.path}: {WEIGHTS} does not match its {META} "
                              f"({str(e).splitlines()[0]}); the bundle is damaged") from e
        return model.eval()


def resolve(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.is_dir():
        return p
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", str(name_or_path)) and (models_dir() / str(name_or_path)).is_dir():
        return models_dir() / str(name_or_path)
    known = ", ".join(b.name for b in list_bundles()) or "none yet (run finetune)"
    raise EngineError(f"no model {str(name_or_path)!r}: give a bundle folder or one of the saved models: {known}")


def load_bundle(name_or_path: str | Path) -> Bundle:
    path = resolve(name_or_path)
    try:
        meta = json.loads((path / META).read_text())
    except FileNotFoundError as e:
        raise EngineError(f"{path} is not a model bundle: it has no {META}") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise EngineError(f"model {path}: {META} is damaged ({e}); fine-tune the model again") from e
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise EngineError(f"model {path}: {META} lacks {', '.join(missing)}; the bundle is damaged or from another "
                          "program")
    if not (path / WEIGHTS).is_file():
        raise EngineError(f"model {path} has no {WEIGHTS}; the bundle is damaged")
    return Bundle(path, meta)


def list_bundles() -> list[Bundle]:
    d = models_dir()
    out = []
    for p in sorted(d.iterdir()) if d.is_dir() else []:
        if p.is_dir() and not p.name.startswith(".") and (p / META).is_file():
            try:
                out.append(Bundle(p, json.loads((p / META).read_text())))
            except ValueError:
                out.append(Bundle(p, {"damaged": True}))
    return out


def save_bundle(name: str, state_dict: dict, meta: dict, files: dict[str, str] | None = None,
                overwrite: bool = False, directory: Path | None = None) -> Path:
    """Write weights, model.json and extra text files into a temp folder, then rename it into place."""
    root = directory or models_dir()
    dest = root / check_name(name)
    if dest.exists() and not overwrite:
        raise EngineError(f"a model named {name!r} already exists ({dest}); choose another name, or delete or "
                          "rename it first (python -m engine models delete|rename)")
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        torch.save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, tmp / WEIGHTS)
        (tmp / META).write_text(json.dumps({**meta, "engine_version": __version__}, indent=1))
        for fname, text in (files or {}).items():
            (tmp / fname).write_text(text)
        if dest.exists():
            old = root / f".{name}.{uuid.uuid4().hex[:8]}.old"
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def delete_bundle(name_or_path: str) -> Path:
    path = load_bundle(name_or_path).path
    shutil.rmtree(path)
    return path


def rename_bundle(old: str, new: str) -> Path:
    path = load_bundle(old).path
    dest = path.parent / check_name(new)
    if dest.exists():
        raise EngineError(f"a model named {new!r} already exists; choose another name")
    os.replace(path, dest)
    return dest
