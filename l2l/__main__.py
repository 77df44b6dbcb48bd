"""`python -m l2l`: see l2l/cli.py."""
from .cli import main

raise SystemExit(main())
