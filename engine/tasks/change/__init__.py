"""Change detection between two dates: the job (`job.py`) and its per-pixel measures (`measures.py`)."""
