"""Allow `python -m tracer`."""

from .cli import main

main()
