"""The dock's raster picker: the project's raster layers with the likely hyperspectral inputs first, and the best
of them chosen when nothing is chosen yet, so that a new user never starts from an empty box or a class map."""
from __future__ import annotations

from functools import lru_cache
from typing import Callable

from osgeo import gdal
from qgis.core import QgsMapLayerType, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import QComboBox

from .. import inputs

SPECTRAL, MULTIBAND, SINGLE_BAND = 0, 1, 2  # ranks, best first


@lru_cache(maxsize=1024)
def has_wavelengths(path: str) -> bool:
    """Whether GDAL reports band wavelengths for the file (ENVI headers, per-band or NetCDF metadata): the engine
    can then detect its profile. Only the metadata is read, once per file for all the boxes (it only orders them)."""
    ds = gdal.OpenEx(path, gdal.OF_RASTER | gdal.OF_READONLY)
    if ds is None:
        return False
    keys = [*(ds.GetMetadata("ENVI") or {}), *(ds.GetMetadata() or {}), *(ds.GetRasterBand(1).GetMetadata() or {})]
    return any("wavelength" in k.lower() for k in keys)


def rank(layer: QgsRasterLayer, known_band_counts: set[int]) -> int:
    """SPECTRAL: several bands, with wavelengths or a known sensor's band count (a detected or assignable profile);
    MULTIBAND: other multi-band rasters (a profile file may fit); SINGLE_BAND: class maps, confidence, change."""
    bands = layer.bandCount()
    if bands < 2:
        return SINGLE_BAND
    path = inputs.raster_file(layer)
    if bands in known_band_counts or path is not None and has_wavelengths(path):
        return SPECTRAL
    return MULTIBAND


class RasterBox(QComboBox):
    """The project's rasters, ranked (`rank`) and by name within a rank. When nothing is chosen it chooses the
    best spectral raster other than `avoid()` (the 'before' date, for the 'after' box). Holds layer ids, never
    layer objects, so a layer being removed is never touched."""

    layerChanged = pyqtSignal(object)  # the chosen QgsRasterLayer, or None

    def __init__(self, project: QgsProject, avoid: Callable[[], QgsRasterLayer | None] = lambda: None):
        super().__init__()
        self.project, self.avoid = project, avoid
        self.known_band_counts: set[int] = set()
        self.ranks: dict[str, int] = {}  # layer id → rank, worked out once per layer
        self.watched: set[str] = set()  # layers whose renaming re-sorts the box
        self.shown: str | None = None  # the id layerChanged last announced
        self.currentIndexChanged.connect(self._emit)
        project.layersAdded.connect(self.refresh)  # bound methods: Qt disconnects them when the box is deleted
        project.layersRemoved.connect(self.refresh)
        project.cleared.connect(self.refresh)
        self.refresh()

    def set_known_band_counts(self, counts: set[int]) -> None:
        """The engine's sensor profiles' band counts: rasters with one of them are assignable."""
        if counts != self.known_band_counts:
            self.known_band_counts = set(counts)
            self.ranks.clear()
            self.refresh()

    def rasters(self) -> list[QgsRasterLayer]:
        """The project's raster layers in the box's order."""
        layers = [lyr for lyr in self.project.mapLayers().values() if lyr.type() == QgsMapLayerType.RasterLayer]
        for lyr in layers:
            if lyr.id() not in self.ranks:
                self.ranks[lyr.id()] = rank(lyr, self.known_band_counts)
            if lyr.id() not in self.watched:
                self.watched.add(lyr.id())
                lyr.nameChanged.connect(self.refresh)
        return sorted(layers, key=lambda lyr: (self.ranks[lyr.id()], lyr.name().lower()))

    def refresh(self, *_) -> None:
        """List the rasters again, keeping the choice; choose the best one when there is none."""
        keep = self.currentData()
        layers = self.rasters()
        self.blockSignals(True)
        self.clear()
        for lyr in layers:
            self.addItem(lyr.name(), lyr.id())
            self.setItemData(self.count() - 1, lyr.source(), Qt.ToolTipRole)
        index = self.findData(keep) if keep else -1
        if index < 0:
            avoid = self.avoid()
            best = [lyr for lyr in layers if self.ranks[lyr.id()] == SPECTRAL and lyr is not avoid]
            index = self.findData(best[0].id()) if best else -1
        self.setCurrentIndex(index)
        self.blockSignals(False)
        self._emit()

    def currentLayer(self) -> QgsRasterLayer | None:  # noqa: N802 - the name QgsMapLayerComboBox uses
        layer_id = self.currentData()
        return self.project.mapLayer(layer_id) if layer_id else None

    def setLayer(self, layer: QgsRasterLayer | None) -> None:  # noqa: N802
        self.setCurrentIndex(self.findData(layer.id()) if layer is not None else -1)

    def _emit(self, *_) -> None:
        """layerChanged, once per real change of the chosen layer."""
        if self.currentData() != self.shown:
            self.shown = self.currentData()
            self.layerChanged.emit(self.currentLayer())
