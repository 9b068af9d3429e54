"""The "SpecAware" Processing provider: the dock's jobs as toolbox, modeler, batch and qgis_process algorithms."""
