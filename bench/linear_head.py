"""The few-label linear head's forward, folded (two [K, C] weights applied to the spectrum) against the features
it was fitted on (2·planes + 1 + C of them per pixel, then the classifier), in the same process:

    python3 build.py bench linear-head [--repeats N]

Base preset, one 224 px tile of 425 AVIRIS-NG-like bands, 8 classes, the arms run in turn, medians. Prints each
arm's seconds per tile, the ratio folded / built, and the largest logit difference between the two.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from engine.model import preset  # noqa: E402
from engine.model.linear import LinearSegmenter  # noqa: E402
from engine.model.segmenter import SpectralInput  # noqa: E402
from gpu import interleaved  # noqa: E402

BANDS, TILE, CLASSES = 425, 224, 8


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.manual_seed(0)
    nm = np.linspace(377.0, 2500.0, BANDS)
    model = LinearSegmenter(preset("base"), CLASSES, wavelength=list(nm)).eval()
    with torch.no_grad():
        model.classifier.weight.normal_()
        model.scale.uniform_(0.5, 2.0)
    spec = SpectralInput(tuple(map(float, nm)), (5.8,) * BANDS, 5.0, "avng", "L2")
    x = torch.rand(1, BANDS, TILE, TILE) * 0.5
    arms = {"built": lambda: model.classify(model.features(x, spec).permute(0, 2, 3, 1)).permute(0, 3, 1, 2),
            "folded": lambda: model(x, spec)}
    with torch.inference_mode():
        out = {k: fn() for k, fn in arms.items()}  # the logits compared below
        med = interleaved(arms, torch.device("cpu"), args.repeats)
    diff = (out["folded"] - out["built"]).abs().max().item() / out["built"].abs().max().item()
    print(f"linear head, one {TILE} px tile × {BANDS} bands, {CLASSES} classes, {torch.get_num_threads()} threads, "
          f"medians of {args.repeats}: built features {med['built']:.3f} s, folded {med['folded']:.3f} s; "
          f"folded / built {med['folded'] / med['built']:.3f}; largest logit difference {diff:.1e} of the largest "
          "logit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
