"""The engine job chains behind the plugin's workflows (classify, fine-tune, change), written once for the dock and
for Processing, and the one runner that takes a chain through the engine step by step.

Plain Python (no Qt, no QGIS): a step is `(job, params)`, where params may be a function of the results of the
steps before it (fine-tuning from the backbone that `adapt` just wrote; mapping change with the model just trained).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Union

from .vocabulary import CHANGE_TASK

Params = Union[dict, Callable[[list], dict]]
Step = tuple[str, Params]
RunJob = Callable[[str, dict, Callable[[float, str], None]], dict]

ADAPT_KEYS = ("raster", "preset", "backbone", "seed", "profile")  # what adaptation shares with fine-tuning


def classify(raster: str, out: str, model: str | None = None, clusters: int | None = None,
             profile: str | None = None, overwrite: bool = False) -> list[Step]:
    """Classify with a model (a name or bundle folder), or into `clusters` unsupervised clusters."""
    return [("classify", {"raster": raster, "out": out, "model": model, "clusters": clusters, "profile": profile,
                          "overwrite": overwrite})]


def classify_cells(raster: str, out: str, model: str, cell_size: int | None = None, zones: str | None = None,
                   profile: str | None = None, overwrite: bool = False) -> list[Step]:
    """Grid cells of `cell_size` px, or the `zones` polygons, classified into the GeoPackage `out` (the result
    names the model's classes and colours, for the style)."""
    return [("classify-cells", {"raster": raster, "out": out, "model": model, "cell_size": cell_size,
                                "zones": zones, "profile": profile, "overwrite": overwrite})]


def adapted_backbone(weights_dir: Path, model_name: str) -> Path:
    """Where scene adaptation before fine-tuning model `model_name` writes its backbone."""
    return Path(weights_dir) / f"adapted-{model_name}.pth"


def finetune(params: dict, weights_dir: Path, adapt_minutes: float = 0.0, list_models: bool = False) -> list[Step]:
    """Fine-tune with the engine's `finetune` params. With `adapt_minutes`, MAE adaptation to the raster comes first
    (its backbone written under `weights_dir`) and fine-tuning starts from that backbone; with `list_models`, the
    model list (which then shows the new model) comes last."""
    steps: list[Step] = [("finetune", params)]
    if adapt_minutes > 0:
        adapt = {k: params[k] for k in ADAPT_KEYS if k in params}
        adapt.update(minutes=adapt_minutes, out=str(adapted_backbone(weights_dir, params["out"])),
                     overwrite=True)  # the plugin's own backbone for this model name
        steps = [("adapt", adapt), ("finetune", lambda done: {**params, "backbone": done[0]["backbone"]})]
    if list_models:
        steps.append(("models", {"action": "list"}))
    return steps


def suggest(raster: str, model: str, count: int, out: str, polygons: str | None = None,
            profile: str | None = None, overwrite: bool = False) -> list[Step]:
    """Where to label next: `count` points (a GeoPackage at `out`) where `model` hesitates most, kept away from the
    labels in `polygons`; once labelled they go back to fine-tuning as its `samples`."""
    return [("suggest", {"raster": raster, "model": model, "count": count, "out": out, "polygons": polygons,
                         "profile": profile, "overwrite": overwrite})]


def change(before: str, after: str, out: str, threshold: str | float = "significance", min_area: float = 0.0,
           model: str | None = None, samples: dict | None = None, method: str = "specaware",
           p_value: float = 0.001, overwrite: bool = False) -> list[Step]:
    """Change between two dates: unsupervised, or with a change or classification `model` (from–to classes).

    With `samples` (`polygons`, `layer`, `class_field`, `preset`, `epochs`: change / no-change polygons), a change
    model is first trained on the pair, named after the output folder, and then maps it."""
    params = {"before": before, "after": after, "out": out, "threshold": threshold, "min_area": min_area,
              "model": model, "method": method, "p_value": p_value, "overwrite": overwrite}
    if samples is None:
        return [("change", params)]
    train = {"task": CHANGE_TASK, "raster": before, "after": after, "out": f"change-{Path(out).name}",
             "change_method": method, **samples}
    return [("finetune", train), ("change", lambda done: {**params, "model": done[0]["bundle"]})]


def run_steps(steps: list[Step], run_job: RunJob, progress: Callable[[float, str], None],
              finished: Callable[[str, dict], None] | None = None) -> list[dict]:
    """Run a chain in order through `run_job(job, params, progress)`; returns every step's result.

    `progress(fraction, message)` covers the whole chain (two steps: the first fills it to one half);
    `finished(job, result)` hears of each step as it ends."""
    results: list[dict] = []
    for i, (job, params) in enumerate(steps):
        params = params(results) if callable(params) else params

        def step_progress(fraction: float, message: str, i=i) -> None:
            progress((i + fraction) / len(steps), message)
        results.append(run_job(job, params, step_progress))
        if finished is not None:
            finished(job, results[-1])
    return results
