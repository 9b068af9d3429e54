"""Pre-training data: patches from a folder of rasters (GDAL windows) or Hyper-400K-style `.npz` files with a
manifest, and a batch sampler that keeps one sensor, level and band set per batch, the same way on every rank.

Hyper-400K layout (what the authors' preparation scripts write, and what `write_patches` writes):
  DIR/manifest.csv  columns id, filename, GSD, wavelength, fwhm, sensor, level
                    (wavelength and fwhm as space-separated nm; sensor as the model's key, e.g. avng; level L1/L2)
  DIR/<filename>    .npz holding one array `data`: float16, [C, H, W]

GDAL is imported only to read rasters, so pre-training from .npz patches runs on machines without it.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.errors import EngineError, shorten
from ..core.files import atomic_write_text
from ..core.vocabulary import LEVEL_MAX

MAX_INVALID = 0.2  # the authors skip patches with more than 20 % invalid values
MANIFEST_FIELDS = ["id", "filename", "GSD", "wavelength", "fwhm", "sensor", "level"]
RASTER_SUFFIXES = {".tif", ".tiff", ".img", ".dat", ".bsq", ".bil", ".bip", ".nc", ".vrt", ".hdr"}


@dataclass(frozen=True)
class PatchRecord:
    """One patch: where it comes from and the band metadata the hypernetwork needs."""

    id: str
    source: str  # an .npz file, or a raster path
    window: tuple[int, int, int, int] | None  # (x, y, w, h) in the raster; None for .npz
    gsd: float
    wavelength: tuple[float, ...]
    fwhm: tuple[float, ...]
    sensor: str
    level: str
    zero_bands: tuple[int, ...] = ()  # water-vapour and bad bands, zeroed as the authors did
    scale: float = 1.0  # raster values × scale = reflectance or radiance

    @property
    def group(self) -> tuple:
        """Patches that may share a batch: same sensor, level and bands."""
        return (self.sensor, self.level, self.wavelength)


def clean(patch: np.ndarray, level: str, zero_bands=()) -> tuple[np.ndarray, float]:
    """(patch with invalid values and zeroed bands set to 0, share of invalid values)."""
    x = patch.astype(np.float32, copy=True)
    bad = ~np.isfinite(x) | (x < 0) | (x > LEVEL_MAX.get(level, LEVEL_MAX["L2"]))
    share = float(bad.mean())
    x[bad] = 0.0
    if zero_bands:
        x[list(zero_bands)] = 0.0
    return x, share


class PatchSet(torch.utils.data.Dataset):
    """A list of PatchRecords; reading a record gives the cleaned float32 [C, H, W] patch."""

    def __init__(self, records: list[PatchRecord]):
        if not records:
            raise EngineError("no pre-training patches: the data holds no raster or .npz patch with at most "
                              f"{MAX_INVALID:.0%} invalid values")
        self.records = records
        self._open: dict = {}  # raster path → open GDAL dataset

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> np.ndarray:
        r = self.records[i]
        if r.window is None:
            with np.load(r.source) as z:
                data = z["data"]
        else:
            from ..io.datasets import open_raster  # optional: GDAL only for raster patches
            ds = self._open.get(r.source) or self._open.setdefault(r.source, open_raster(r.source))
            data = ds.ReadAsArray(*r.window).astype(np.float32) * r.scale
            data = data[None] if data.ndim == 2 else data
        return clean(data, r.level, r.zero_bands)[0]

    def groups(self) -> dict[tuple, list[int]]:
        out: dict[tuple, list[int]] = {}
        for i, r in enumerate(self.records):
            out.setdefault(r.group, []).append(i)
        return out

    def summary(self) -> dict:
        return {"patches": len(self), "sources": len({r.source for r in self.records}),
                "groups": [{"sensor": g[0], "level": g[1], "bands": len(g[2]), "patches": len(ix)}
                           for g, ix in self.groups().items()]}


def raster_records(paths: list[str | Path], patch: int = 64, stride: int | None = None,
                   profile: str | None = None) -> list[PatchRecord]:
    """Patches tiled on the fly from rasters (each with its own profile); patches over 20 % invalid are skipped."""
    from ..io.datasets import open_raster  # optional: GDAL only for raster patches
    from ..io.sensors import profile_for_raster  # optional: GDAL only for raster patches
    records = []
    stride = stride or patch
    for path in paths:
        ds = open_raster(path)
        prof = profile_for_raster(path, ds, profile)
        level = prof.level or "L2"
        W, H = ds.RasterXSize, ds.RasterYSize
        if W < patch or H < patch:
            raise EngineError(f"{shorten(path)} is {W} × {H} px, smaller than the {patch} px pre-training patch; use a "
                              "smaller --patch")
        scale = prof.scale or 1.0
        zero = tuple(sorted(prof.dropped()))
        for y in range(0, H - patch + 1, stride):
            for x in range(0, W - patch + 1, stride):
                data = ds.ReadAsArray(x, y, patch, patch).astype(np.float32) * scale
                if clean(data[None] if data.ndim == 2 else data, level)[1] > MAX_INVALID:
                    continue
                records.append(PatchRecord(f"{Path(path).stem}-{x}-{y}", str(path), (x, y, patch, patch),
                                           float(prof.gsd or 1.0), tuple(map(float, prof.wavelength_nm)),
                                           tuple(map(float, prof.fwhm_nm)), prof.sensor, level, zero, scale))
    return records


def manifest_records(folder: str | Path) -> list[PatchRecord]:
    """Records from DIR/manifest.csv (Hyper-400K layout)."""
    folder = Path(folder)
    path = folder / "manifest.csv"
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = set(MANIFEST_FIELDS) - set(reader.fieldnames or [])
        if missing:
            raise EngineError(f"{shorten(path)} lacks the column(s) {', '.join(sorted(missing))}; expected "
                              f"{', '.join(MANIFEST_FIELDS)}")
        records = []
        for n, row in enumerate(reader, 2):
            try:
                wl = tuple(float(v) for v in row["wavelength"].split())
                fw = tuple(float(v) for v in row["fwhm"].split())
                gsd = float(row["GSD"])
            except ValueError as e:
                raise EngineError(f"{shorten(path)} line {n}: {e}; wavelength and fwhm are space-separated nm") from e
            if len(wl) != len(fw):
                raise EngineError(f"{shorten(path)} line {n}: {len(wl)} wavelengths but {len(fw)} FWHM values")
            records.append(PatchRecord(row["id"], str(folder / row["filename"]), None, gsd, wl, fw,
                                       row["sensor"], row["level"]))
    return records


def find_records(data: str | Path, patch: int = 64) -> list[PatchRecord]:
    """A Hyper-400K folder (with manifest.csv), a folder of rasters, or one raster."""
    data = Path(data)
    if (data / "manifest.csv").is_file():
        return manifest_records(data)
    if data.is_dir():
        rasters = sorted(p for p in data.iterdir() if p.suffix.lower() in RASTER_SUFFIXES - {".hdr"}
                         or (p.suffix == "" and p.with_suffix(".hdr").exists()))
        if not rasters:
            raise EngineError(f"{shorten(data)} holds neither manifest.csv nor rasters (.tif, .img, ENVI, .nc)")
        return raster_records(rasters, patch)
    if data.is_file():
        return raster_records([data], patch)
    raise EngineError(f"pre-training data {shorten(data)} does not exist")


def write_patches(rasters: list[str | Path], out: str | Path, patch: int = 64) -> Path:
    """Write Hyper-400K-style patches (float16 .npz, CHW) and manifest.csv from rasters; returns the manifest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = raster_records(rasters, patch)
    rows = []
    for i, r in enumerate(records):
        data = PatchSet([r])[0].astype(np.float16)
        name = f"{r.id}.npz"
        fd, tmp = tempfile.mkstemp(dir=out, suffix=".npz")
        os.close(fd)
        np.savez(tmp, data=data)
        os.replace(tmp, out / name)
        rows.append({"id": r.id, "filename": name, "GSD": f"{r.gsd:g}",
                     "wavelength": " ".join(f"{v:.3f}" for v in r.wavelength),
                     "fwhm": " ".join(f"{v:.3f}" for v in r.fwhm), "sensor": r.sensor, "level": r.level})
    text = io.StringIO()
    w = csv.DictWriter(text, MANIFEST_FIELDS)
    w.writeheader()
    w.writerows(rows)
    return atomic_write_text(out / "manifest.csv", text.getvalue())


class GroupedBatchSampler(torch.utils.data.Sampler):
    """Batches of one group (sensor, level, bands), shuffled per epoch from (seed, epoch) alone, then dealt to
    ranks. Every rank computes the same list, so all ranks get the same number of batches in lockstep."""

    def __init__(self, groups: dict[tuple, list[int]], batch_size: int, rank: int = 0, world_size: int = 1,
                 seed: int = 0):
        self.groups = [sorted(ix) for _, ix in sorted(groups.items(), key=lambda kv: _key(kv[0]))]
        self.batch_size, self.rank, self.world_size, self.seed = batch_size, rank, world_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def all_batches(self) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        batches = []
        for ix in self.groups:
            order = [ix[i] for i in torch.randperm(len(ix), generator=g).tolist()]
            if len(order) < self.batch_size:  # a small group still trains: repeat it to one full batch
                order = (order * (self.batch_size // len(order) + 1))[:self.batch_size]
            batches += [order[i:i + self.batch_size] for i in range(0, len(order) - self.batch_size + 1,
                                                                   self.batch_size)]
        batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        per_rank = -(-len(batches) // self.world_size)
        batches += batches[:per_rank * self.world_size - len(batches)]  # pad so every rank has as many
        return batches

    def __iter__(self):
        return iter(self.all_batches()[self.rank::self.world_size])

    def __len__(self) -> int:
        return len(self.all_batches()) // self.world_size


def _key(group: tuple) -> str:
    return hashlib.sha1(repr(group).encode()).hexdigest()
