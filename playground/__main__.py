"""`python -m playground ...`: see playground/cli.py."""

import sys

from .cli import main

sys.exit(main())
