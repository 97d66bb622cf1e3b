"""``python -m benchmarks``: run the suite and print its table."""

from .cli import main

raise SystemExit(main())
