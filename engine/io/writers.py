"""Writing results safely: tiled GeoTIFFs, and `OutputSet`, which makes a job's whole set of outputs appear together
or not at all."""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from osgeo import gdal

from ..core.errors import EngineError, shorten
from ..core.files import disk_error, scratch_dir

gdal.UseExceptions()


def check_writable(directory: str | Path) -> Path:
    """Create the output folder and prove a file can be written there, before any compute starts."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise EngineError(f"the output folder {shorten(d)} is a file; give a folder")
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=d, prefix=".specaware-write-test-"):
            pass
    except OSError as e:
        raise EngineError(f"cannot write to the output folder {shorten(d)} ({e.strerror}); choose another "
                          "folder") from e
    return d


def georef(ds) -> tuple[tuple, str]:
    """Geotransform (rotation kept) and projection WKT of a dataset, to copy onto outputs."""
    return ds.GetGeoTransform(can_return_null=True), ds.GetProjection()


class GeoTiffWriter:
    """A tiled, compressed GeoTIFF written window by window (inside an `OutputSet`'s scratch folder)."""

    def __init__(self, path: str | Path, width: int, height: int, bands: int, dtype: int, geotransform, projection,
                 nodata=None, color_table: dict[int, tuple] | None = None, category_names: list[str] | None = None,
                 band_names: list[str] | None = None, shown: Path | None = None):
        self.path = Path(path)
        self.shown = shown or self.path  # the name the user knows it by (not the scratch copy)
        # DEFLATE level 1 (libdeflate) writes 5× faster than the default level 6 for 3 % larger files; GDAL's
        # worker threads compress blocks beside the caller.
        opts = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "COMPRESS=DEFLATE", "ZLEVEL=1",
                "NUM_THREADS=ALL_CPUS", "BIGTIFF=IF_SAFER"]
        if dtype in (gdal.GDT_Float32, gdal.GDT_Float64):
            opts.append("PREDICTOR=3")
        try:
            self.ds = gdal.GetDriverByName("GTiff").Create(str(self.path), width, height, bands, dtype, opts)
        except RuntimeError as e:
            raise self._error(e) from e
        if geotransform is not None:
            self.ds.SetGeoTransform(geotransform)
        if projection:
            self.ds.SetProjection(projection)
        for b in range(1, bands + 1):
            band = self.ds.GetRasterBand(b)
            if nodata is not None:
                band.SetNoDataValue(float(nodata))
            if band_names:
                band.SetDescription(band_names[b - 1])
        if color_table:
            ct = gdal.ColorTable()
            for value, rgba in color_table.items():
                ct.SetColorEntry(int(value), tuple(int(c) for c in (list(rgba) + [255])[:4]))
            self.ds.GetRasterBand(1).SetRasterColorTable(ct)
            self.ds.GetRasterBand(1).SetRasterColorInterpretation(gdal.GCI_PaletteIndex)
        if category_names:
            self.ds.GetRasterBand(1).SetRasterCategoryNames(category_names)

    def write(self, array: np.ndarray, x: int, y: int) -> None:
        """Write [h, w] (one band) or [bands, h, w] at column x, row y."""
        if array.ndim == 2:
            array = array[None]
        try:
            for b in range(array.shape[0]):
                self.ds.GetRasterBand(b + 1).WriteArray(array[b], x, y)
        except RuntimeError as e:
            raise self._error(e) from e

    def _error(self, e: RuntimeError) -> EngineError:
        return disk_error(OSError(errno.ENOSPC if "space" in str(e).lower() else 0, shorten(e, 200)), self.shown)

    def close(self) -> Path:
        if self.ds is not None:
            try:
                self.ds.FlushCache()
            except RuntimeError as e:
                raise self._error(e) from e
            finally:
                self.ds = None
        return self.path


class OutputSet:
    """A job's outputs in `out_dir`, all or none: each is written into a hidden scratch folder beside them and
    moved in by `commit`; a failure, a cancel or `abort` removes the folder. Scratch folders left by killed
    runs are removed by the next run in the same folder. Only the names given are ever replaced."""

    def __init__(self, out_dir: str | Path, names: list[str]):
        self.created = not Path(out_dir).exists()  # a folder made for this run goes again if the run fails
        self.out_dir = check_writable(out_dir)
        self.names = list(names)
        self.scratch = scratch_dir(self.out_dir)
        self.writers: list[GeoTiffWriter] = []
        self.committed = False

    def path(self, name: str) -> Path:
        """Where to write output `name` now (inside the scratch folder)."""
        if name not in self.names:
            raise ValueError(f"{name} is not one of this job's outputs {self.names}")
        return self.scratch / name

    def final(self, name: str) -> Path:
        return self.out_dir / name

    def geotiff(self, name: str, *args, **kwargs) -> GeoTiffWriter:
        writer = GeoTiffWriter(self.path(name), *args, shown=self.final(name), **kwargs)
        self.writers.append(writer)
        return writer

    @contextmanager
    def guard(self, name: str):
        """Where to write output `name` with OGR or other libraries; their write errors become a sentence."""
        try:
            yield self.path(name)
        except (RuntimeError, OSError) as e:
            raise disk_error(OSError(getattr(e, "errno", 0), shorten(e, 200)), self.final(name)) from e

    def text(self, name: str, text: str) -> Path:
        try:
            self.path(name).write_text(text, encoding="utf-8")
        except OSError as e:
            raise disk_error(e, self.final(name)) from e
        return self.path(name)

    def commit(self) -> list[Path]:
        """Move every written output (with GDAL's `.aux.xml` sidecars) into place; returns their final paths."""
        for w in self.writers:
            w.close()
        done = []
        for name in self.names:
            src = self.scratch / name
            if not src.exists():
                continue
            for sidecar in (f"{name}.aux.xml",):
                if (self.scratch / sidecar).exists():
                    os.replace(self.scratch / sidecar, self.out_dir / sidecar)
                elif (self.out_dir / sidecar).exists():  # a stale sidecar would relabel the new file
                    (self.out_dir / sidecar).unlink()
            os.replace(src, self.out_dir / name)
            done.append(self.out_dir / name)
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.committed = True
        return done

    def abort(self) -> None:
        for w in self.writers:
            w.ds = None
        shutil.rmtree(self.scratch, ignore_errors=True)
        if self.created:
            try:
                self.out_dir.rmdir()  # only when empty
            except OSError:
                pass

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.committed:
            self.abort()
