"""SpecAware for QGIS: the plugin side. It never imports torch; the engine runs in its own process."""


def classFactory(iface):  # noqa: N802 - QGIS's required name
    from .plugin import SpecAwarePlugin
    return SpecAwarePlugin(iface)
