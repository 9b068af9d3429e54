"""The jobs the worker and the CLI run: each is a request class (its parameters, validated before work starts)
and the task function that carries it out."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

from ..core.errors import EngineError, SpecAwareWarning, shorten
from ..core.progress import CancelFn, ProgressFn
from ..core.request import Request, param
from ..core.runtime import Runtime
from ..tasks.adapt import AdaptRequest, adapt
from ..tasks.batch import BatchRequest, classify_batch
from ..tasks.cells import CellsRequest, classify_cells
from ..tasks.change.job import ChangeRequest, detect_change
from ..tasks.checks import (DiagnosticsRequest, GoldenRequest, InspectWeightsRequest, ProfilesRequest, diagnostics,
                            inspect_weights, profiles, verify_golden)
from ..tasks.classify import ClassifyRequest, classify
from ..tasks.finetune import FinetuneRequest, finetune
from ..tasks.info import InfoRequest, raster_info
from ..tasks.models import ModelsRequest, models
from ..tasks.pretrain import MakePatchesRequest, PretrainRequest, make_patches, run_pretrain
from ..tasks.suggest import SuggestRequest, suggest

TaskFn = Callable[[Request, Runtime, ProgressFn, CancelFn], dict]


@dataclass(frozen=True)
class Job:
    request: type[Request]
    run: TaskFn


JOBS: dict[str, Job] = {}


def register(request: type[Request], run: TaskFn) -> None:
    JOBS[request.job] = Job(request, run)


for _request, _run in ((InfoRequest, raster_info), (ClassifyRequest, classify), (FinetuneRequest, finetune),
                       (ChangeRequest, detect_change), (CellsRequest, classify_cells), (AdaptRequest, adapt),
                       (PretrainRequest, run_pretrain), (MakePatchesRequest, make_patches),
                       (BatchRequest, classify_batch), (ModelsRequest, models), (ProfilesRequest, profiles),
                       (InspectWeightsRequest, inspect_weights), (GoldenRequest, verify_golden),
                       (DiagnosticsRequest, diagnostics), (SuggestRequest, suggest)):
    register(_request, _run)


def parse(name, params) -> Request:
    """The validated request of job `name`, or an `EngineError` naming what is wrong."""
    if not isinstance(name, str) or name not in JOBS:
        raise EngineError(f"unknown job {shorten(name, 60)!r}; this engine runs: {', '.join(sorted(JOBS))}")
    return JOBS[name].request.from_params({} if params is None else params)


@dataclass(kw_only=True)
class ValidateRequest(Request):
    job = "validate"
    summary = "check a job's parameters without running it"
    name: str = param(help="the job to check", positional=True)
    params: dict | None = param(None, "its parameters", cli=False)


def validate(req: ValidateRequest, runtime: Runtime | None = None, progress: ProgressFn | None = None,
             cancel: CancelFn | None = None) -> dict:
    """The job's parameters as the engine reads them (defaults filled in), or the error that running it would give."""
    return {"job": req.name, "params": parse(req.name, req.params).to_params()}


register(ValidateRequest, validate)


def run_request(request: Request, progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                runtime: Runtime | None = None, **extra) -> tuple[dict, list[str]]:
    """Run a validated request in-process; returns its result and the user-facing warnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecAwareWarning)
        result = JOBS[request.job].run(request, runtime or Runtime("cpu"), progress, cancel, **extra)
    msgs = [str(w.message) for w in caught if issubclass(w.category, SpecAwareWarning)]
    msgs += result.pop("warnings", []) if isinstance(result, dict) else []
    return result, msgs


def run_job(name: str, params: dict, progress: ProgressFn | None = None, cancel: CancelFn | None = None,
            runtime: Runtime | None = None) -> tuple[dict, list[str]]:
    """Validate and run job `name` with `params` (a JSON object)."""
    return run_request(parse(name, params), progress, cancel, runtime)


def call(job: str, progress: ProgressFn | None = None, cancel: CancelFn | None = None,
         runtime: Runtime | None = None, **params) -> dict:
    """Validate `params` as the worker does and run the job in this process; the result keeps the job's own
    warnings (for scripts, benchmarks and tests)."""
    request = parse(job, params)
    return JOBS[job].run(request, runtime or Runtime("cpu"), progress, cancel)
