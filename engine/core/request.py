"""Typed job requests: each job's parameters are one dataclass whose fields carry their help, allowed range or
values and kind (an input file, an output folder…). `Request.from_params` turns a JSON object or the CLI's
options into a validated request, or an `EngineError` that names the parameter and says what is allowed, before
any work starts. The CLI's options are built from the same fields (`service/cli.py`)."""
from __future__ import annotations

import math
import os
import re
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from .errors import EngineError, shorten

INPUT_KINDS = {"raster", "vector", "file", "folder", "path"}  # must exist and be readable
NAMED_KINDS = {"model"}  # a saved name or a path; when it is an existing path, it is an input too
OUTPUT_KINDS = {"out-dir", "out-file"}  # must be creatable; never one of the inputs


@dataclass(frozen=True)
class Param:
    """What a request field means and allows."""

    help: str
    kind: str = "value"  # value | raster | vector | file | folder | path | model | out-dir | out-file
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # lo < value (a learning rate), not lo <= value
    choices: tuple | None = None
    pattern: str | None = None  # values outside `choices` that are still allowed (e.g. last-N)
    positional: bool = False  # a positional CLI argument
    cli: bool = True  # offered on the command line


def param(default=MISSING, help: str = "", **kw):
    """A request field: its default (none = required) and its `Param` facts."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"param": Param(help, **kw)})
    return field(default=default, metadata={"param": Param(help, **kw)})


def _allowed(p: Param, integer: bool) -> str:
    """The allowed values in words: "one of a, b", "a whole number from 1 to 1000", "a number above 0"…"""
    if p.choices:
        return "one of " + ", ".join(map(str, p.choices)) + (" or last-N (e.g. last-2)" if p.pattern else "")
    what = "a whole number" if integer else "a number"
    fmt = (lambda v: f"{int(v)}") if integer else (lambda v: f"{v:g}")
    parts = []
    if p.lo is not None:
        parts.append(f"above {fmt(p.lo)}" if p.lo_open else f"of at least {fmt(p.lo)}")
    if p.hi is not None:
        parts.append(f"at most {fmt(p.hi)}")
    if p.lo is not None and p.hi is not None and not p.lo_open:
        return f"{what} from {fmt(p.lo)} to {fmt(p.hi)}"
    return " ".join([what, " and ".join(parts)]).strip()


class Request:
    """Base of every job's request. Subclasses are dataclasses with `param` fields and a `job` name."""

    job: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line for the CLI's help

    # --- building ------------------------------------------------------------------------------------------
    @classmethod
    def spec(cls) -> list[tuple[str, type, Param, object]]:
        """(name, type, Param, default or MISSING) of every field, in order."""
        hints = typing.get_type_hints(cls)
        out = []
        for f in fields(cls):
            default = f.default if f.default is not MISSING else (
                f.default_factory() if f.default_factory is not MISSING else MISSING)
            out.append((f.name, hints[f.name], f.metadata["param"], default))
        return out

    @classmethod
    def from_params(cls, raw) -> "Request":
        """The validated request for a job's params (a JSON object); None values count as not given."""
        if not isinstance(raw, dict):
            raise EngineError(f"the parameters of job {cls.job!r} must be a JSON object, not {shorten(raw, 60)}")
        spec = {name: (typ, p, default) for name, typ, p, default in cls.spec()}
        unknown = sorted(k for k, v in raw.items() if k not in spec and v is not None)
        if unknown:
            raise EngineError(f"job {cls.job!r} has no parameter {', '.join(shorten(k, 40) for k in unknown)}; "
                              f"it takes {', '.join(spec)}")
        values = {}
        for name, (typ, p, default) in spec.items():
            value = raw.get(name)
            if value is None:
                if default is MISSING:
                    raise EngineError(f"job {cls.job!r} needs the parameter {name!r}: {p.help}")
                continue
            values[name] = _coerce(name, typ, p, value)
        request = cls(**values)
        request.validate()
        return request

    def to_params(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    # --- validation ----------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Ranges, allowed values, files that exist, outputs that can be written and are not inputs; then the
        request's own cross-field rules (`check`)."""
        for name, typ, p, _ in self.spec():
            value = getattr(self, name)
            if value is None:
                continue
            for v in value if isinstance(value, list) else [value]:
                _check_value(name, p, v)
        self.check()
        self.check_outputs_spare_inputs()
        self.check_existing_outputs()

    def check(self) -> None:
        """Rules between fields (override)."""

    def check_existing_outputs(self) -> None:
        """An output file that exists already is replaced only when the request says `overwrite`: a job never
        destroys a file it was not asked to replace (the analyst's labelled points, say)."""
        if getattr(self, "overwrite", False):
            return
        for name, _, p, _ in self.spec():
            value = getattr(self, name)
            if p.kind == "out-file" and value is not None and exists(Path(str(value)).expanduser()):
                raise EngineError(f"{name}: {shorten(value)} exists already and is left alone; choose another file "
                                  "name, or ask for it to be replaced (overwrite, --overwrite)")
        if hasattr(self, "overwrite"):  # jobs that write named files into a folder: the same rule for each
            there = [path for path in self.output_paths() if exists(path.expanduser())]
            if there:
                raise EngineError(f"out: {shorten(there[0].parent)} holds {', '.join(p.name for p in there)} "
                                  "already, left alone; choose another folder, or ask for them to be replaced "
                                  "(overwrite, --overwrite)")

    def input_paths(self) -> list[Path]:
        """Every input file the request names (with ENVI headers beside rasters)."""
        out = []
        for name, _, p, _ in self.spec():
            value = getattr(self, name)
            if (p.kind in INPUT_KINDS or p.kind in NAMED_KINDS) and value is not None:
                for v in value if isinstance(value, list) else [value]:
                    path = Path(v).expanduser()
                    out += [path, path.with_suffix(".hdr"), Path(f"{path}.hdr")] if p.kind == "raster" else [path]
        return [p for p in out if exists(p)]

    def output_paths(self) -> list[Path]:
        """Every file the job will write (override); checked against the inputs before any work."""
        return []

    def replaced_folders(self) -> list[Path]:
        """Folders the job replaces as a whole (a model bundle); no input may lie inside them."""
        return []

    def check_outputs_spare_inputs(self) -> None:
        inputs = [p.resolve() for p in self.input_paths()]
        for out in self.output_paths():
            o = out.expanduser().resolve()
            if o in inputs:
                raise EngineError(f"{shorten(out)} is one of this job's inputs and would be overwritten by its "
                                  "output; choose another output folder or name")
        for folder in self.replaced_folders():
            f = folder.expanduser().resolve()
            inside = [i for i in inputs if f == i or f in i.parents]
            if inside:
                raise EngineError(f"{shorten(folder)} holds the input {shorten(inside[0])} and would be replaced; "
                                  "choose another output")


def _coerce(name: str, typ, p: Param, value):
    """`value` as the field's type, or an error naming the parameter."""
    origin = typing.get_origin(typ)
    args = [a for a in typing.get_args(typ) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and args:
        typ = args[0]
        origin = typing.get_origin(typ)
    if origin is list:
        items = value if isinstance(value, list) else [value]
        return [_coerce(name, typing.get_args(typ)[0], p, v) for v in items]
    if typ is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes"):
            return True
        if str(value).lower() in ("false", "0", "no"):
            return False
        raise EngineError(f"{name} {shorten(value, 40)!r}: give true or false")
    if typ is int:
        try:
            f = float(value)
        except (TypeError, ValueError):
            f = math.nan
        if isinstance(value, bool) or not math.isfinite(f) or not f.is_integer():
            raise EngineError(f"{name} {shorten(value, 40)!r} is not allowed: give {_allowed(p, True)} "
                              f"({p.help})")
        return int(f)
    if typ is float:
        try:
            f = float(value)
        except (TypeError, ValueError):
            f = math.nan
        if isinstance(value, bool) or not math.isfinite(f):
            raise EngineError(f"{name} {shorten(value, 40)!r} is not allowed: give {_allowed(p, False)} "
                              f"({p.help})")
        return f
    if typ is dict:
        if not isinstance(value, dict):
            raise EngineError(f"{name} must be a JSON object")
        return value
    if isinstance(value, (dict, list)):
        raise EngineError(f"{name} must be a text value, not {type(value).__name__}")
    return str(value)


def _check_value(name: str, p: Param, value) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        integer = isinstance(value, int)
        low = p.lo is not None and (value <= p.lo if p.lo_open else value < p.lo)
        high = p.hi is not None and value > p.hi
        if low or high:
            raise EngineError(f"{name} {value:g} is out of range: give {_allowed(p, integer)} ({p.help})")
    if p.choices and value not in p.choices and not (p.pattern and re.fullmatch(p.pattern, str(value))):
        raise EngineError(f"{name} {shorten(value, 40)!r} is not allowed: give {_allowed(p, False)} ({p.help})")
    if p.kind in INPUT_KINDS:
        _check_input(name, p, str(value))
    elif p.kind in OUTPUT_KINDS:
        _check_output(name, p, Path(str(value)).expanduser())


def exists(path: Path, name: str = "path") -> bool:
    """Whether `path` exists; a path the system cannot even look up (too long, invalid) is a sentence."""
    try:
        return path.exists()
    except (OSError, ValueError) as e:
        raise EngineError(f"{name}: {shorten(path)} cannot be used ({getattr(e, 'strerror', None) or e}); give "
                          "a shorter or valid path") from e


def _check_input(name: str, p: Param, value: str) -> None:
    if value.startswith(("NETCDF:", "HDF5:", "HDF4_", "/vsi")):
        return
    path = Path(value).expanduser()
    if not exists(path, name):
        raise EngineError(f"{name}: {shorten(value)} does not exist; check the path")
    if p.kind in ("raster", "vector", "file") and path.is_dir() and p.kind != "vector":
        raise EngineError(f"{name}: {shorten(value)} is a folder; give the {p.kind} file")
    if p.kind == "folder" and not path.is_dir():
        raise EngineError(f"{name}: {shorten(value)} is not a folder")
    if not os.access(path, os.R_OK):
        raise EngineError(f"{name}: {shorten(value)} cannot be read (permission denied)")


def writable_ancestor(path: Path) -> Path | None:
    """The nearest existing folder at or above `path`, if the job could create `path` there."""
    for folder in [path, *path.parents]:
        if exists(folder):
            return folder if folder.is_dir() and os.access(folder, os.W_OK | os.X_OK) else None
    return None


def _check_output(name: str, p: Param, path: Path) -> None:
    target = path if p.kind == "out-dir" else path.parent
    if p.kind == "out-dir" and exists(path, name) and not path.is_dir():
        raise EngineError(f"{name}: {shorten(path)} is a file, not a folder; give an output folder")
    if p.kind == "out-file" and path.is_dir():
        raise EngineError(f"{name}: {shorten(path)} is a folder; give a file name")
    if writable_ancestor(target) is None:
        raise EngineError(f"{name}: cannot write to {shorten(target)} (it is read-only or not a folder); choose "
                          "another output")
