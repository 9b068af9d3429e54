"""Loading pretrained SpecAware weights: any of the published wrappers, config inferred from the shapes.

Files are read with `torch.load(weights_only=True)`, so a crafted pickle cannot run code. An encoder tensor
that is missing or has the wrong shape is an error naming it: the encoder is never partly random.
"""
from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..core.errors import EngineError, shorten
from .config import PRESETS, SpecAwareConfig
from .mae import SpecAwareMAE
from .vit import SpecAwareEncoder

ENCODER_PREFIXES = ("cls_token", "patch_embed.", "blocks.", "norm.")
DECODER_PREFIXES = ("mask_token", "decoder_")
WRAPPER_KEYS = ("model", "state_dict", "module")
STRIP_PREFIXES = ("module.", "encoder.", "backbone.")
V_LAST = "patch_embed.matrix_generator.v_generator.6"


@dataclass
class Checkpoint:
    """A state dict in the reference layout, its inferred config, and notes on how it was found."""

    path: str
    state_dict: dict[str, torch.Tensor]
    config: SpecAwareConfig
    has_decoder: bool
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        c = self.config
        n_params = sum(t.numel() for t in self.state_dict.values())
        return {"path": self.path, "embed_dim": c.embed_dim, "depth": c.depth, "num_heads": c.num_heads,
                "patch_size": c.patch_size, "rank": c.rank, "content_grid": c.content_grid,
                "decoder": ({"embed_dim": c.decoder_embed_dim, "depth": c.decoder_depth,
                             "num_heads": c.decoder_num_heads} if self.has_decoder else None),
                "tensors": len(self.state_dict), "parameters": n_params, "notes": self.notes}


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The bare state dict of a checkpoint file, unwrapped and with training prefixes removed."""
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"weights file {shorten(path)} does not exist: check the path in the settings")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise EngineError(f"{shorten(path)} is not a plain PyTorch checkpoint (it holds objects other than tensors and "
                          f"would need to run code to load, which SpecAware refuses): {str(e).splitlines()[0]}") from e
    except Exception as e:  # noqa: BLE001 - torch raises many types for damaged files
        raise EngineError(f"{shorten(path)} could not be read as a PyTorch checkpoint; it may be truncated or not a "
                          f"checkpoint at all ({str(e).splitlines()[0]}). Download it again.") from e
    notes = []
    while isinstance(obj, dict):
        wrapper = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if wrapper is None:
            break
        notes.append(f"unwrapped {{'{wrapper}': ...}}")
        obj = obj[wrapper]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise EngineError(f"{shorten(path)} does not contain a state dict (a mapping of names to tensors)")
    state = dict(obj)
    for prefix in STRIP_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
            notes.append(f"removed the '{prefix}' prefix")
        elif any(k.startswith(prefix + "patch_embed.") for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            notes.append(f"kept the '{prefix}*' tensors and removed the prefix")
    return state, notes


def _need(state: dict, key: str, path) -> torch.Tensor:
    if key not in state:
        raise EngineError(f"{shorten(path)}: encoder tensor '{key}' is missing; this is not a complete SpecAware "
                          "encoder")
    return state[key]


def infer_config(state: dict[str, torch.Tensor], path="checkpoint", num_heads: int | None = None) -> SpecAwareConfig:
    """Sizes from tensor shapes. Heads are not visible in shapes: presets by width, else 64-wide heads."""
    E = _need(state, "cls_token", path).shape[-1]
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    u_out = _need(state, "patch_embed.matrix_generator.u_generator.6.weight", path).shape[0]
    v_out = _need(state, f"{V_LAST}.weight", path).shape[0]
    rank = u_out // E
    k = math.isqrt(v_out // rank)
    if rank * E != u_out or rank * k * k != v_out:
        raise EngineError(f"{shorten(path)}: generator shapes {u_out} and {v_out} do not fit embed dim {E}")
    avg = _need(state, "patch_embed.content_feature_extractor.avg_feature_encoder.0.weight", path)
    wv = _need(state, "patch_embed.spectral_embedding.fwhm_encoder.mlp.2.weight", path).shape[0]
    fc1 = _need(state, "blocks.0.mlp.fc1.weight", path).shape[0]
    heads_by_width = {p["embed_dim"]: p["num_heads"] for p in PRESETS.values()}
    cfg = dict(embed_dim=E, depth=depth, patch_size=k, rank=rank, wv_planes=wv, mlp_ratio=fc1 / E,
               content_grid=math.isqrt(avg.shape[1]), content_hidden=avg.shape[0],
               num_heads=num_heads or heads_by_width.get(E, max(1, E // 64)))
    if "decoder_embed.weight" in state:
        D = state["decoder_embed.weight"].shape[0]
        dheads = {p["decoder_embed_dim"]: p["decoder_num_heads"] for p in PRESETS.values()}
        cfg.update(decoder_embed_dim=D, decoder_depth=len({k.split(".")[1] for k in state
                                                           if k.startswith("decoder_blocks.")}),
                   decoder_num_heads=dheads.get(D, max(1, D // 32)))
    return SpecAwareConfig(**cfg)


def resize_patch_size(state: dict[str, torch.Tensor], new_k: int) -> dict[str, torch.Tensor]:
    """Bilinearly resize the k×k axis of the V generator's last layer, as the authors' fine-tuning does."""
    w, b = state[f"{V_LAST}.weight"], state[f"{V_LAST}.bias"]
    rank = state["patch_embed.matrix_generator.u_generator.6.weight"].shape[0] // state["cls_token"].shape[-1]
    k = math.isqrt(w.shape[0] // rank)
    if k == new_k:
        return state
    hidden = w.shape[1]
    w4 = w.reshape(rank, k, k, hidden).permute(0, 3, 1, 2)
    w4 = F.interpolate(w4, size=(new_k, new_k), mode="bilinear", align_corners=False)
    b4 = F.interpolate(b.reshape(rank, 1, k, k), size=(new_k, new_k), mode="bilinear", align_corners=False)
    out = dict(state)
    out[f"{V_LAST}.weight"] = w4.permute(0, 2, 3, 1).reshape(rank * new_k * new_k, hidden).contiguous()
    out[f"{V_LAST}.bias"] = b4.reshape(rank * new_k * new_k).contiguous()
    return out


def check_against(model: torch.nn.Module, state: dict[str, torch.Tensor], prefixes, path) -> None:
    """Every expected tensor under `prefixes` is present with the right shape, else an error naming it."""
    for key, expected in model.state_dict().items():
        if not key.startswith(prefixes):
            continue
        if key not in state:
            raise EngineError(f"{shorten(path)}: tensor '{key}' is missing (expected shape {list(expected.shape)})")
        if state[key].shape != expected.shape:
            raise EngineError(f"{shorten(path)}: tensor '{key}' has shape {list(state[key].shape)}, expected "
                              f"{list(expected.shape)} for the inferred configuration")


def load_checkpoint(path: str | Path, patch_size: int | None = None, num_heads: int | None = None) -> Checkpoint:
    """Read, unwrap, infer the config and validate every encoder tensor; optionally change the patch size."""
    state, notes = read_state_dict(path)
    cfg = infer_config(state, path, num_heads)
    if patch_size and patch_size != cfg.patch_size:
        state = resize_patch_size(state, patch_size)
        notes.append(f"resized the V generator from patch {cfg.patch_size} to {patch_size}")
        cfg.patch_size = patch_size
    has_decoder = "decoder_embed.weight" in state
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        reference = (SpecAwareMAE if has_decoder else SpecAwareEncoder)(cfg)
    check_against(reference, state, ENCODER_PREFIXES, path)
    if has_decoder:
        check_against(reference, state, DECODER_PREFIXES, path)
    expected = set(reference.state_dict())
    extra = sorted(k for k in state if k not in expected)
    if extra:
        notes.append(f"ignored {len(extra)} tensor(s) that are not part of SpecAware, e.g. {extra[0]}")
        state = {k: v for k, v in state.items() if k in expected}
    return Checkpoint(str(path), state, cfg, has_decoder, notes)


def load_encoder(path: str | Path, patch_size: int | None = None) -> tuple[SpecAwareEncoder, Checkpoint]:
    """An encoder with every tensor from the checkpoint (strict), in eval mode."""
    ckpt = load_checkpoint(path, patch_size)
    enc = SpecAwareEncoder(ckpt.config)
    enc.load_state_dict({k: v for k, v in ckpt.state_dict.items() if k.startswith(ENCODER_PREFIXES)}, strict=True)
    return enc.eval(), ckpt

