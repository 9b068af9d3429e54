"""SpecAware engine: the model, raster I/O and jobs behind the QGIS plugin. Never imports qgis."""

__version__ = "0.1.0"
