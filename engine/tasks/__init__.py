"""The jobs a user runs, one module each: info, classify, fine-tune, change, cells, adapt, batch, models.
Each takes its typed request and returns a JSON-able result."""
