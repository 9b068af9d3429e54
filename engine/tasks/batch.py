"""Classify many rasters across ranks (torchrun): each rank streams its share through the same driver as
Classify; finished outputs are skipped, so a stopped run restarts where it was; rank 0 writes the summary."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.distributed import Ranks
from ..core.errors import EngineError, shorten
from ..core.files import atomic_write_text
from ..core.progress import CancelFn, ProgressFn
from ..core.request import Request, param
from ..core.runtime import Runtime
from .classify import ClassifyRequest, classify


@dataclass(kw_only=True)
class BatchRequest(Request):
    job = "classify-batch"
    summary = "classify a list of rasters; run it under torchrun to share them"
    computes = True
    rasters: str = param(help="text file with one raster path per line", kind="file")
    model: str = param(help="model name or bundle folder", kind="model")
    out: str = param(help="output folder: one subfolder per raster and summary.json", kind="out-dir")

    def output_paths(self) -> list[Path]:
        return [Path(self.out) / "summary.json"]


def read_list(list_file: str | Path) -> list[Path]:
    """Raster paths, one per line (blank lines and # comments ignored; relative paths are from the list)."""
    list_file = Path(list_file)
    paths = []
    for n, line in enumerate(list_file.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line) if Path(line).is_absolute() else list_file.parent / line
        if not p.exists():
            raise EngineError(f"{shorten(list_file)} line {n}: {shorten(p)} does not exist")
        paths.append(p)
    if not paths:
        raise EngineError(f"{shorten(list_file)} lists no rasters")
    names = [p.stem for p in paths]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise EngineError(f"{shorten(list_file)}: several rasters are named {', '.join(sorted(dup))}; their outputs "
                          "would collide, rename them")
    return paths


def finished(out: Path) -> bool:
    return (out / "classes.tif").is_file() and (out / "report.json").is_file()


def classify_batch(req: BatchRequest, runtime: Runtime | None = None, progress: ProgressFn | None = None,
                   cancel: CancelFn | None = None, ranks: Ranks | None = None) -> dict:
    """Rasters i ≡ rank (mod world size) are this rank's; each goes to OUT/<raster name>/."""
    ranks = ranks or Ranks(device=(runtime or Runtime("cpu")).device)
    paths = read_list(req.rasters)
    model, out_root = req.model, Path(req.out)
    out_root.mkdir(parents=True, exist_ok=True)
    runtime = Runtime(str(ranks.device))
    mine = []
    for path in paths[ranks.rank::ranks.world_size]:
        target = out_root / path.stem
        t0 = time.perf_counter()
        if finished(target):
            mine.append({"raster": str(path), "out": str(target), "status": "skipped (already done)",
                         "rank": ranks.rank})
            continue
        request = ClassifyRequest.from_params({"raster": str(path), "out": str(target), "model": model,
                                               "overwrite": True})  # the batch's own unfinished folder: redone
        r = classify(request, runtime, progress, cancel)
        mine.append({"raster": str(path), "out": str(target), "status": "classified", "rank": ranks.rank,
                     "seconds": round(time.perf_counter() - t0, 2), "areas_ha": r.get("areas_ha")})
    everyone = [item for part in ranks.gather(mine) for item in part]
    summary = {"model": model, "world_size": ranks.world_size, "rasters": len(paths),
               "classified": sum(i["status"] == "classified" for i in everyone),
               "skipped": sum(i["status"] != "classified" for i in everyone),
               "items": sorted(everyone, key=lambda i: i["raster"]), "summary": str(out_root / "summary.json")}
    if ranks.main:
        atomic_write_text(out_root / "summary.json", json.dumps(summary, indent=1))
    ranks.barrier()
    return summary
