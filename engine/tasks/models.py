"""`models`: list, show, delete or rename the saved model bundles (by name in the models folder; a path only
when it is a bundle this engine wrote)."""
from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import EngineError
from ..core.paths import models_dir
from ..core.progress import CancelFn, ProgressFn
from ..core.request import Request, param
from ..core.runtime import Runtime
from ..model.bundles import delete_bundle, list_bundles, load_bundle, rename_bundle

ACTIONS = ("list", "show", "delete", "rename")


@dataclass(kw_only=True)
class ModelsRequest(Request):
    job = "models"
    summary = "list, show, delete or rename model bundles"
    action: str = param("list", "what to do", choices=ACTIONS, positional=True)
    name: str | None = param(None, "the model's name (or its bundle folder)", positional=True)
    new_name: str | None = param(None, "the new name, for rename", positional=True)

    def check(self) -> None:
        if self.action in ("show", "delete", "rename") and not self.name:
            raise EngineError(f"models {self.action} needs a model name")
        if self.action == "rename" and not self.new_name:
            raise EngineError("models rename needs the old and the new name")


def models(req: ModelsRequest, runtime: Runtime | None = None, progress: ProgressFn | None = None,
           cancel: CancelFn | None = None) -> dict:
    if req.action == "list":
        return {"models": [{"name": b.name, "path": str(b.path), "classes": b.meta.get("classes", {}).get("names"),
                            "sensor": b.meta.get("profile", {}).get("name"), "created": b.meta.get("created"),
                            "task": b.meta.get("task", "pixels"),
                            "val_miou": (b.meta.get("validation") or {}).get("miou"),
                            "damaged": bool(b.meta.get("damaged"))} for b in list_bundles()],
                "directory": str(models_dir())}
    if req.action == "show":
        b = load_bundle(req.name)
        return {"name": b.name, "path": str(b.path), **b.meta}
    if req.action == "delete":
        return {"deleted": str(delete_bundle(req.name))}
    return {"renamed": str(rename_bundle(req.name, req.new_name))}
