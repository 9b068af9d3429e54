"""SpecAware for QGIS: the plugin side (dock, tasks, Processing provider, layer styling).

It never imports torch; it drives the engine worker process (`python -m engine.worker`) over JSON lines.
Built so far: `layers.py` (styling results as QGIS layers). The plugin itself (classFactory, the dock, tasks
and the Processing provider) is not built yet: see the plugin issue.
"""
