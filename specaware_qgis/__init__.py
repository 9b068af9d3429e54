"""SpecAware for QGIS: the plugin side (dock, tasks, Processing provider, layer styling).

It never imports torch; it drives the engine worker process (`python -m engine.worker`) over JSON lines.
The plugin itself (classFactory and the dock) is not built yet: see the plugin issue.
"""
