"""Learning: labels from polygons, metrics, the one `Trainer` and its tasks (pixels, change, cells), k-means,
pre-training and its patches. Imports `core`, `io` and `model`."""
