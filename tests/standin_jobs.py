"""A classify-shaped job with the stand-in model, registered only in the worker of the worker tests
(`--extra-jobs standin_jobs`). It drives the real streaming driver and writers; `delay` seconds per batch give
the cancel test time to act.
"""
from dataclasses import dataclass

from engine.core.request import Request, param
from engine.io.raster import RasterSource
from engine.service.jobs import register
from standin import standin_model, write_classes


@dataclass(kw_only=True)
class StandinRequest(Request):
    job = "classify-standin"
    raster: str = param(help="raster", kind="raster")
    out: str = param(help="output folder", kind="out-dir")
    profile: str | None = param(None, "sensor profile")
    delay: float = param(0.0, "seconds per batch", lo=0)
    tile: int = param(16, "tile", lo=8)
    overlap: int = param(4, "overlap", lo=0)
    batch_size: int = param(2, "batch", lo=1)


def classify_standin(req: StandinRequest, runtime=None, progress=None, cancel=None) -> dict:
    src = RasterSource.open(req.raster, req.profile)
    return write_classes(src, standin_model(req.delay), ["dark", "mid", "bright"],
                         [(20, 20, 120), (30, 160, 30), (230, 200, 40)], req.out, tile=req.tile,
                         overlap=req.overlap, batch_size=req.batch_size, progress=progress, cancel=cancel)


register(StandinRequest, classify_standin)
