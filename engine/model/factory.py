"""The backbone a job starts from: the configured (or given) checkpoint, another bundle's encoder, or a random
initialisation of a preset; with a sentence that says which, for reports."""
from __future__ import annotations

from pathlib import Path

import torch

from ..core.errors import EngineError, shorten
from ..core.paths import configured_checkpoint
from .bundles import load_bundle, looks_like_name
from .config import SpecAwareConfig, preset
from .linear import build_model
from .segmenter import Segmenter
from .weights import ENCODER_PREFIXES, load_checkpoint

RANDOM = "random"


def init_model(preset_name: str, head: str, num_classes: int, backbone: str | None,
               patch_size: int | None = None, task: str = "pixels", **options) -> tuple[Segmenter, str, bool]:
    """(model, provenance sentence, pretrained?) for the backbone choice: None = configured or random. `options`
    go to the linear head (`build_model`)."""
    source = backbone
    if source is None:
        ckpt = configured_checkpoint()
        source = str(ckpt) if ckpt else RANDOM
    if source == RANDOM:
        cfg = preset(preset_name, **({"patch_size": patch_size} if patch_size else {}))
        why = "as asked" if backbone == RANDOM else "no pretrained weights configured"
        return build_model(cfg, head, num_classes, task, **options), f"random initialisation — {why}", False
    path = Path(source)
    if path.is_file():
        ckpt = load_checkpoint(path, patch_size=patch_size)
        model = build_model(ckpt.config, head, num_classes, task, **options)
        model.encoder.load_state_dict({k: v for k, v in ckpt.state_dict.items() if k.startswith(ENCODER_PREFIXES)})
        note = f" ({'; '.join(ckpt.notes)})" if ckpt.notes else ""
        return model, f"pretrained checkpoint {path} (E={ckpt.config.embed_dim}, depth {ckpt.config.depth}){note}", True
    if not path.exists() and (path.suffix in (".pth", ".pt") or not looks_like_name(source)):
        raise EngineError(f"the backbone {shorten(source)} does not exist; give a SpecAware checkpoint (.pth), a "
                          "model name or bundle folder, or 'random'")
    bundle = load_bundle(source)  # a bundle's backbone
    cfg = SpecAwareConfig.from_dict(bundle.meta["preset_config"])
    model = build_model(cfg, head, num_classes, task, **options)
    enc = {k[len("encoder."):]: v for k, v in bundle.state_dict().items() if k.startswith("encoder.")}
    model.encoder.load_state_dict(enc)
    return model, f"backbone of model bundle {bundle.path} ({bundle.meta.get('backbone', 'unknown origin')})", True


def feature_encoder(preset_name: str, backbone: str | None, seed: int, device) -> tuple[torch.nn.Module, str, bool]:
    """The backbone's encoder in eval mode on `device`, for the unsupervised jobs (clusters, change features),
    its provenance sentence, and whether it is pretrained."""
    torch.manual_seed(seed)
    seg, provenance, pretrained = init_model(preset_name, "light", 2, backbone)
    return seg.encoder.to(device).eval(), provenance, pretrained
