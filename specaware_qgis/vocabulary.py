"""The words the plugin shares with the engine (presets, heads, backbone modes, tasks, devices…), read from
`resources/vocabulary.json` so that the dock's and Processing's choices are the engine's own lists.

Plain Python (no Qt): the workflows and their tests use it without QGIS.
"""
from __future__ import annotations

import json

from .client import engine_root

PATH = engine_root() / "resources" / "vocabulary.json"
WORDS: dict = json.loads(PATH.read_text(encoding="utf-8"))  # every list; the named ones below are those shown today

# How the dock and Processing name each training task (keys: the engine's words in TASKS).
TASK_LABELS: dict[str, str] = {"pixels": "Land cover (per pixel)",
                               "cells": "Grid cells / parcels (one class per polygon)",
                               "change": "Change samples (change / no change, Before → After)"}

PRESETS: list[str] = WORDS["presets"]
HEADS: list[str] = WORDS["heads"]
BACKBONE_MODES: list[str] = WORDS["backbone_modes"]
TASKS: list[str] = WORDS["tasks"]
DEVICES: list[str] = WORDS["devices"]
CHANGE_METHODS: list[str] = WORDS["change_methods"]
THRESHOLD_MODES: list[str] = WORDS["threshold_modes"]
CHANGE_TASK = "change"  # the task word for training a change model
SCENE_TASKS: list[str] = [t for t in TASKS if t != CHANGE_TASK]  # models that classify one raster
