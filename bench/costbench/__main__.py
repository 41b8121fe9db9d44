"""Entry point: python -m costbench (bench/run sets up the path)."""

import sys

from .cli import main

sys.exit(main())
