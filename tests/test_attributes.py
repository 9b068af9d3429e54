"""The shipped MiniLM attribute vectors and how sensors and levels map onto them."""
import json
import warnings

import pytest
import torch

from conftest import REFERENCE, ROOT, need_shared
from engine.core.errors import EngineError, SpecAwareWarning
from engine.model.spectral import attribute_vector


def test_shipped_vectors_match_reference():
    ref = json.loads(need_shared(REFERENCE / "attribute_embeddings.json").read_text())
    ours = json.loads((ROOT / "resources" / "attribute_embeddings.json").read_text())
    assert set(ours["strings"]) == {"avc", "avng", "av3", "L1", "L2", "others"}
    for key, entry in ref["strings"].items():
        a = torch.tensor(ours["strings"][key]["embedding"])
        b = torch.tensor(entry["embedding"])
        assert a.shape == (384,)
        assert (a - b).abs().max() <= 1e-5, key


def test_unknown_sensor_falls_back_with_warning():
    with pytest.warns(SpecAwareWarning, match="others"):
        v = attribute_vector("sensor", "enmap")
    assert torch.equal(v, attribute_vector("sensor", "others"))


def test_known_sensor_has_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attribute_vector("sensor", "avng")


def test_unknown_level_is_an_error_listing_levels():
    with pytest.raises(EngineError, match="L1.*L2"):
        attribute_vector("level", "L3")
