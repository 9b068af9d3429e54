"""How the engine is reached: typed job requests, the job registry, the JSON-lines worker and the CLI."""
