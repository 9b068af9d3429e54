"""HyperEmbedding token computation: the engine's fused contraction against the reference-style path.

Same weights and input, 224 px, patch 8, B=2, C in {224, 284, 425}, CPU, float32. Prints time, peak memory added
(VmHWM delta, each path in a fresh process, measured the same way), their ratios, the fast path's GFLOP/s next
to a plain matmul of the same contraction size, and whole-encoder throughput for the presets.

    python3 build.py bench hyper-embedding
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import peak_rss_mib, reset_peak_rss  # noqa: E402
from engine.model import SpecAwareEncoder, preset  # noqa: E402
from engine.model.hyper import hyper_tokens, hyper_tokens_reference  # noqa: E402

B, SIZE, K, E, RANK = 2, 224, 8, 768, 64
BAND_COUNTS = (224, 284, 425)


def make_inputs(C: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, C, SIZE, SIZE, generator=g)
    U = torch.randn(B, C, E, RANK, generator=g) * 0.02
    V = torch.randn(B, C, RANK, K * K, generator=g) * 0.02
    bias = torch.randn(B, E, generator=g)
    return x, U, V, bias


def timed(fn, reps: int = 3) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def child(path: str, C: int) -> None:
    """Peak memory added by one call, in a fresh process: reset the high-water mark, run, read it."""
    x, U, V, bias = make_inputs(C)
    fn = hyper_tokens if path == "fast" else hyper_tokens_reference
    with torch.no_grad():
        fn(x[:, :, :16, :16], U, V, bias, K)  # load kernels before measuring
        reset_peak_rss()
        before = peak_rss_mib()
        out = fn(x, U, V, bias, K)
        after = peak_rss_mib()
    print(json.dumps({"added_mib": after - before, "sum": float(out.sum())}))


def peak_added_mib(path: str, C: int) -> float:
    res = subprocess.run([sys.executable, __file__, "--child", path, str(C)], capture_output=True, text=True,
                         check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])["added_mib"]


def contraction_flops(C: int) -> float:
    n = (SIZE // K) ** 2
    return 2.0 * B * (C * K * K * RANK * E + n * C * K * K * E)


def main() -> int:
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, B={B}, {SIZE} px, patch {K}, E={E}, r={RANK}")
    print(f"{'C':>4} {'ref s':>7} {'fast s':>7} {'speed-up':>8} {'ref MiB':>8} {'fast MiB':>8} {'mem ratio':>9} "
          f"{'max|diff|':>9} {'fast GF/s':>9} {'matmul GF/s':>11} {'of matmul':>9}")
    ok = True
    for C in BAND_COUNTS:
        x, U, V, bias = make_inputs(C)
        with torch.no_grad():
            ref = hyper_tokens_reference(x, U, V, bias, K)
            fast = hyper_tokens(x, U, V, bias, K)
            diff = float((ref - fast).abs().max())
            t_ref = timed(lambda: hyper_tokens_reference(x, U, V, bias, K), reps=2)
            t_fast = timed(lambda: hyper_tokens(x, U, V, bias, K))
            a = torch.randn(B * (SIZE // K) ** 2, C * K * K)
            w = torch.randn(C * K * K, E)
            t_mm = timed(lambda: a @ w)
        del ref, fast
        mm_gflops = 2.0 * a.shape[0] * a.shape[1] * E / t_mm / 1e9
        fast_gflops = contraction_flops(C) / t_fast / 1e9
        m_ref, m_fast = peak_added_mib("reference", C), peak_added_mib("fast", C)
        ok &= diff <= 1e-4
        print(f"{C:>4} {t_ref:>7.3f} {t_fast:>7.3f} {t_ref / t_fast:>7.1f}x {m_ref:>8.0f} {m_fast:>8.0f} "
              f"{m_ref / max(m_fast, 1e-3):>8.1f}x {diff:>9.1e} {fast_gflops:>9.0f} {mm_gflops:>11.0f} "
              f"{fast_gflops / mm_gflops:>8.0%}")
    print("targets at C=425: speed-up >= 3x, memory ratio >= 10x, >= 80% of matmul GFLOP/s; outputs agree to 1e-4:",
          "yes" if ok else "NO")

    print("\nwhole encoder, CPU float32, 224 px, C=425, B=2 (tiles/s):")
    x = torch.rand(B, 425, SIZE, SIZE)
    wl = torch.linspace(380, 2500, 425).expand(B, -1).contiguous()
    fw = torch.full((B, 425), 5.0)
    gsd = torch.tensor([5.0] * B)
    for name in ("tiny", "small", "base"):
        enc = SpecAwareEncoder(preset(name)).eval()
        with torch.no_grad():
            t = timed(lambda: enc(x, wl, fw, gsd, "avng", "L2"), reps=2)
        print(f"  {name:>5}: {B / t:6.2f} tiles/s ({t / B:.2f} s/tile)")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(main())
