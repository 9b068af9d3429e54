"""The ground floor: errors, progress and cancel callbacks, the shared vocabulary, paths, device and ranks.

Imports nothing else from the engine."""
