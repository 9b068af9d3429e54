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

from .. import __version__
from ..core.errors import EngineError, shorten
from ..core.paths import models_dir
from ..core.files import disk_error, scratch_dir
from .config import SpecAwareConfig
from .linear import build_model

WEIGHTS, META = "weights.pt", "model.json"
FORMAT = "specaware-bundle"  # model.json's marker: only folders carrying it are ever replaced or deleted
REQUIRED = ("preset_config", "head", "classes", "profile", "tile")


def check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name or ""):
        raise EngineError(f"model name {name!r} (the last folder of the path) may use the letters A–Z and a–z "
                          "without accents, digits, '_', '-' and '.', starting with a letter or digit, up to 100 "
                          "characters")
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
            raise EngineError(f"model {shorten(self.path)}: {WEIGHTS} cannot be read ({str(e).splitlines()[0]}); "
                              "the bundle is damaged: fine-tune it again or restore it from a backup") from e

    def build(self):
        """The Segmenter with the bundle's weights, in eval mode on the CPU."""
        m = self.meta
        model = build_model(SpecAwareConfig.from_dict(m["preset_config"]), m["head"], len(m["classes"]["names"]),
                            m.get("task", "pixels"), **m.get("head_options", {}))
        state = self.state_dict()
        broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if broken:
            raise EngineError(f"model {shorten(self.path)}: {len(broken)} of its weight tensors hold values that are "
                              f"not finite numbers (first: {broken[0]}); the model is broken and would put every pixel "
                              "in one class. Fine-tune it again, with a smaller learning rate")
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise EngineError(f"model {shorten(self.path)}: {WEIGHTS} does not match its {META} "
                              f"({str(e).splitlines()[0]}); the bundle is damaged") from e
        return model.eval()


def _read_meta(path: Path) -> dict | None:
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


def is_bundle(path: Path) -> bool:
    """A folder this engine wrote: weights.pt beside a model.json that carries the bundle format marker (or, from
    earlier versions, the engine version with every required key)."""
    meta = _read_meta(path) if Path(path).is_dir() else None
    if meta is None or not (path / WEIGHTS).is_file():
        return False
    legacy = "engine_version" in meta and all(k in meta for k in REQUIRED)
    return meta.get("format") == FORMAT or legacy


def looks_like_name(value: str) -> bool:
    """A model name (saved in the models folder) rather than a path: no folder separators."""
    return "/" not in value and "\\" not in value and not value.startswith((".", "~"))


def destination(out: str) -> Path:
    """Where `finetune --out` writes: a name goes into the models folder, anything else is a folder path."""
    if looks_like_name(out):
        return models_dir() / check_name(out)
    path = Path(out).expanduser()
    check_name(path.name)
    return path


def check_destination(dest: Path, overwrite: bool) -> None:
    """Refuse to write over anything but one of this engine's bundles, and over a bundle without `overwrite`."""
    if not dest.exists() and not dest.is_symlink():
        return
    if not dest.is_dir() or not is_bundle(dest):
        what = "a file" if not dest.is_dir() else "a folder that is not a SpecAware model"
        raise EngineError(f"{shorten(dest)} already exists and is {what}; it is never replaced. Choose another "
                          "model name or folder")
    if not overwrite:
        raise EngineError(f"a model named {dest.name!r} already exists ({shorten(dest)}); choose another name, "
                          "delete or rename it (python -m engine models delete|rename), or pass --overwrite to "
                          "replace that model")


def resolve(name_or_path: str | Path) -> Path:
    """The bundle folder for a saved model's name, or for a path to a bundle; a name never means a folder in the
    working directory."""
    value = str(name_or_path)
    if looks_like_name(value):
        path = models_dir() / value
        if path.is_dir():
            return path
    else:
        path = Path(value).expanduser()
        if path.is_dir():
            return path
    known = ", ".join(b.name for b in list_bundles()) or "none yet (run finetune)"
    raise EngineError(f"no model {shorten(value)!r}: give a bundle folder or one of the saved models: {known}")


def load_bundle(name_or_path: str | Path) -> Bundle:
    path = resolve(name_or_path)
    if not (path / META).is_file():
        raise EngineError(f"{shorten(path)} is not a model bundle: it has no {META}")
    meta = _read_meta(path)
    if meta is None:
        raise EngineError(f"model {shorten(path)}: {META} is damaged; fine-tune the model again")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise EngineError(f"model {shorten(path)}: {META} lacks {', '.join(missing)}; the bundle is damaged or from "
                          "another program")
    if not (path / WEIGHTS).is_file():
        raise EngineError(f"model {shorten(path)} has no {WEIGHTS}; the bundle is damaged")
    return Bundle(path, meta)


def list_bundles() -> list[Bundle]:
    d = models_dir()
    out = []
    for p in sorted(d.iterdir()) if d.is_dir() else []:
        if p.is_dir() and not p.name.startswith(".") and (p / META).is_file():
            meta = _read_meta(p)
            out.append(Bundle(p, meta if meta is not None else {"damaged": True}))
    return out


def save_bundle(dest: Path, state_dict: dict, meta: dict, files: dict[str, str] | None = None,
                overwrite: bool = False) -> Path:
    """Write weights, model.json and extra text files into a temp folder beside `dest`, then rename it into place
    (replacing only an older bundle, and only with `overwrite`)."""
    check_destination(dest, overwrite)
    root = dest.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = scratch_dir(root)
    except OSError as e:
        raise disk_error(e, dest) from e
    try:
        torch.save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, tmp / WEIGHTS)
        (tmp / META).write_text(json.dumps({**meta, "format": FORMAT, "engine_version": __version__}, indent=1))
        for fname, text in (files or {}).items():
            (tmp / fname).write_text(text, encoding="utf-8")
        if dest.exists():
            old = root / f".{dest.name}.{uuid.uuid4().hex[:8]}.old"
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise disk_error(e, dest) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _own_bundle(name_or_path: str) -> Path:
    """A saved model by name, or a bundle folder this engine wrote; anything else is refused."""
    path = load_bundle(name_or_path).path
    if not is_bundle(path):
        raise EngineError(f"{shorten(path)} is not a bundle written by this engine; it is left alone")
    return path


def delete_bundle(name_or_path: str) -> Path:
    path = _own_bundle(name_or_path)
    shutil.rmtree(path)
    return path


def rename_bundle(old: str, new: str) -> Path:
    path = _own_bundle(old)
    dest = path.parent / check_name(new)
    if dest.exists():
        raise EngineError(f"a model named {new!r} already exists; choose another name")
    os.replace(path, dest)
    return dest
