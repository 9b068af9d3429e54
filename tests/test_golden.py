"""The engine model equals the authors' reference on every golden file, through the public CLI."""
import subprocess
import sys

import pytest

from conftest import REFERENCE, ROOT, need_shared


def golden_files():
    return sorted(REFERENCE.glob("golden_*.pt")) if REFERENCE.exists() else []


@pytest.mark.parametrize("path", golden_files() or [REFERENCE / "golden_*.pt"], ids=lambda p: p.name)
def test_verify_golden_cli(path, engine_env):
    need_shared(path)
    res = subprocess.run([sys.executable, "-m", "engine", "verify-golden", str(path)], cwd=ROOT, env=engine_env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines and all(line.startswith("ok") for line in lines), res.stdout


def test_verify_golden_fails_on_perturbed_weights(tmp_path, engine_env):
    import torch
    src = need_shared(REFERENCE / "golden_encoder_p8_64px.pt")
    doc = torch.load(src, weights_only=True)
    doc["state_dict"]["blocks.3.mlp.fc2.bias"] += 0.01
    bad = tmp_path / "golden_perturbed.pt"
    torch.save(doc, bad)
    res = subprocess.run([sys.executable, "-m", "engine", "verify-golden", str(bad)], cwd=ROOT, env=engine_env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 1
    assert "FAIL" in res.stdout and "tokens" in res.stdout
