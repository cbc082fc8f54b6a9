"""python -m diagnostics advise RUN_DIR [--json] [--fail-on warning|critical]"""

import sys

from .cli import main

sys.exit(main())
