"""The words the engine and the plugin share (`resources/vocabulary.json`, read by both): presets, heads,
backbone modes, tasks, change methods, threshold modes, sensors, levels, devices, and the model's band range."""
from __future__ import annotations

import json
from pathlib import Path

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
_WORDS = json.loads((RESOURCES / "vocabulary.json").read_text(encoding="utf-8"))

PRESETS: tuple[str, ...] = tuple(_WORDS["presets"])
HEADS: tuple[str, ...] = tuple(_WORDS["heads"])
BACKBONE_MODES: tuple[str, ...] = tuple(_WORDS["backbone_modes"])  # and any last-N
TASKS: tuple[str, ...] = tuple(_WORDS["tasks"])
CHANGE_METHODS: tuple[str, ...] = tuple(_WORDS["change_methods"])
THRESHOLD_MODES: tuple[str, ...] = tuple(_WORDS["threshold_modes"])
SENSORS: tuple[str, ...] = tuple(_WORDS["sensors"])
LEVELS: tuple[str, ...] = tuple(_WORDS["levels"])
DEVICES: tuple[str, ...] = tuple(_WORDS["devices"])
WAVELENGTH_MIN_NM, WAVELENGTH_MAX_NM = (float(v) for v in _WORDS["wavelength_range_nm"])
# A level's plausible maximum (the pre-training rule): L1 radiance (µW cm⁻² sr⁻¹ nm⁻¹) 100, L2 reflectance 2.5.
LEVEL_MAX = {"L1": 100.0, "L2": 2.5}
