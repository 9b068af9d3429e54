"""The dock's sections, one widget class each: Classify, Train, Change, Engine and weights; `widgets` holds what
they share (raster choice with its sensor check, layer and model boxes, form helpers)."""
