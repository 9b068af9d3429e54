"""`python -m engine <command>`: the command-line interface (engine/service/cli.py)."""
import sys

from .service.cli import main

sys.exit(main())
