"""Registers the SpecAware algorithms with Processing."""
from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import ALGORITHMS


class SpecAwareProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "specaware"

    def name(self) -> str:
        return "SpecAware"

    def icon(self):
        return QIcon(str(Path(__file__).parents[1] / "icon.svg"))

    def loadAlgorithms(self) -> None:  # noqa: N802 - QGIS's name
        for alg in ALGORITHMS:
            self.addAlgorithm(alg())
