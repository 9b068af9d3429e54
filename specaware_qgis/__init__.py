"""SpecAware for QGIS: classify, fine-tune and detect change in hyperspectral rasters with a local engine.

The plugin never imports torch; the engine runs in its own process (see `client.py`).
"""


def classFactory(iface):  # noqa: N802 - the name QGIS calls
    from .plugin import SpecAwarePlugin
    return SpecAwarePlugin(iface)
