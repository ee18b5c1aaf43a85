"""``python -m eigenflow``: the console script."""

import sys

from .cli import main

sys.exit(main())
