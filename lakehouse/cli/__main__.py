"""``python -m lakehouse.cli``."""

from lakehouse.cli.main import main

main()
