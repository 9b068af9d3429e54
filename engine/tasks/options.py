"""Request fields that several jobs share: the sensor-profile choice and the unsupervised backbone."""
from __future__ import annotations

from dataclasses import dataclass

from ..core.request import Request, param
from ..core.vocabulary import LEVELS, PRESETS, SENSORS


@dataclass(kw_only=True)
class SensorChoice(Request):
    """How the raster's bands are read when its own metadata does not say (or to override it)."""

    profile: str | None = param(None, "sensor profile to use when the raster has no wavelength metadata: a "
                                      "built-in or custom profile name, or a profile JSON file")
    sensor: str | None = param(None, "the sensor, when the metadata and file name do not tell it", choices=SENSORS)
    level: str | None = param(None, "processing level: L1 radiance or L2 reflectance", choices=LEVELS)


@dataclass(kw_only=True)
class BackboneChoice(Request):
    """The encoder of the jobs that run without a fine-tuned model (clusters, unsupervised change)."""

    preset: str = param("tiny", "encoder size when no checkpoint is configured", choices=PRESETS)
    backbone: str | None = param(None, "SpecAware checkpoint (.pth), a model bundle, or 'random'; default: the "
                                       "configured checkpoint, else random", kind="model")
    seed: int = param(0, "random seed", lo=0, hi=2**31 - 1)
