"""Loading pretrained weights: the official Base layout, wrappers, prefixes, broken and hostile files."""
import json
import pickle
import subprocess
import sys

import pytest
import torch

from conftest import REFERENCE, ROOT, need_shared
from engine.core.errors import EngineError
from engine.model import SpecAwareEncoder
from engine.model.weights import load_checkpoint, load_encoder, resize_patch_size


@pytest.fixture(scope="module")
def base_state():
    """A state dict with exactly the official SpecAware-Base MAE names and shapes, random values."""
    shapes = json.loads(need_shared(REFERENCE / "specaware_base_mae_state_dict_shapes.json").read_text())
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(v, generator=g) * 0.02 for k, v in shapes.items()}


@pytest.fixture(scope="module")
def base_file(base_state, tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "SpecAware_Base_model.pth"
    torch.save(base_state, path)
    return path


def test_engine_state_dict_equals_official_shapes(base_state):
    from engine.model import SpecAwareMAE, preset
    with torch.device("meta"):
        ours = SpecAwareMAE(preset("base")).state_dict()
    assert {k: list(v.shape) for k, v in ours.items()} == {k: list(v.shape) for k, v in base_state.items()}


def test_base_shaped_checkpoint_loads(base_file):
    ckpt = load_checkpoint(base_file)
    c = ckpt.config
    assert (c.embed_dim, c.depth, c.num_heads, c.patch_size, c.content_grid) == (768, 12, 12, 8, 28)
    assert ckpt.has_decoder and (c.decoder_embed_dim, c.decoder_depth, c.decoder_num_heads) == (512, 8, 16)


@pytest.mark.parametrize("wrap", ["bare", "model", "state_dict", "encoder_prefix", "module_prefix", "encoder_only"])
def test_wrappers_and_prefixes(wrap, tmp_path):
    enc = SpecAwareEncoder(__import__("engine.model", fromlist=["preset"]).preset("tiny"))
    sd = enc.state_dict()
    obj = {"bare": sd, "model": {"model": sd, "epoch": 3}, "state_dict": {"state_dict": sd},
           "encoder_prefix": {f"encoder.{k}": v for k, v in sd.items()} | {"decoder.head.weight": torch.zeros(2)},
           "module_prefix": {f"module.{k}": v for k, v in sd.items()}, "encoder_only": sd}[wrap]
    path = tmp_path / "w.pth"
    torch.save(obj, path)
    loaded, ckpt = load_encoder(path)
    assert ckpt.config.embed_dim == 192 and ckpt.config.depth == 6 and ckpt.config.num_heads == 3
    assert torch.equal(loaded.blocks[5].mlp.fc2.weight, enc.blocks[5].mlp.fc2.weight)


def test_wrong_shape_names_the_tensor(base_state, tmp_path):
    bad = dict(base_state)
    bad["blocks.4.attn.proj.weight"] = torch.zeros(768, 700)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(EngineError, match=r"blocks\.4\.attn\.proj\.weight.*\[768, 700\]"):
        load_checkpoint(tmp_path / "bad.pth")


def test_missing_encoder_tensor_is_named(base_state, tmp_path):
    bad = {k: v for k, v in base_state.items() if k != "patch_embed.content_feature_extractor.layer_norm.bias"}
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(EngineError, match="content_feature_extractor.layer_norm.bias.*missing"):
        load_checkpoint(tmp_path / "bad.pth")


def test_truncated_and_foreign_files(base_file, tmp_path):
    cut = tmp_path / "cut.pth"
    cut.write_bytes(base_file.read_bytes()[:100_000])
    with pytest.raises(EngineError, match="cut.pth.*truncated"):
        load_checkpoint(cut)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(EngineError, match="notes.txt"):
        load_checkpoint(text)
    with pytest.raises(EngineError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pth")


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_crafted_pickle_does_not_run_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"cls_token": torch.zeros(1, 1, 8), "payload": _Exploit(str(marker))}, path)
    with pytest.raises(EngineError, match="refuses"):
        load_checkpoint(path)
    assert not marker.exists()
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(EngineError):
        load_checkpoint(raw)
    assert not marker.exists()


def test_patch_size_resize(tmp_path):
    from engine.model import preset
    enc = SpecAwareEncoder(preset("tiny"))
    torch.save(enc.state_dict(), tmp_path / "w.pth")
    resized, ckpt = load_encoder(tmp_path / "w.pth", patch_size=16)
    assert ckpt.config.patch_size == 16
    w = resized.patch_embed.matrix_generator.v_generator[6].weight
    assert w.shape == (64 * 256, 64)
    # A constant k×k field stays constant under bilinear resizing.
    sd = enc.state_dict()
    sd["patch_embed.matrix_generator.v_generator.6.bias"] = torch.ones(64 * 64)
    out = resize_patch_size(sd, 4)
    torch.testing.assert_close(out["patch_embed.matrix_generator.v_generator.6.bias"], torch.ones(64 * 16))
    x = torch.rand(1, 3, 32, 32)
    wl = torch.tensor([[500.0, 900.0, 1500.0]])
    assert resized(x, wl, torch.full((1, 3), 10.0), torch.tensor([2.0]), "avng", "L2").shape == (1, 5, 192)


def test_inspect_weights_cli(base_file, tmp_path, engine_env):
    res = subprocess.run([sys.executable, "-m", "engine", "inspect-weights", str(base_file)], cwd=ROOT,
                         env=engine_env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "E=768, depth 12, 12 heads, patch 8" in res.stdout and "decoder: E=512, depth 8, 16 heads" in res.stdout
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"\x00" * 1000)
    res = subprocess.run([sys.executable, "-m", "engine", "inspect-weights", str(bad)], cwd=ROOT, env=engine_env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "broken.pth" in res.stderr and "Traceback" not in res.stderr
