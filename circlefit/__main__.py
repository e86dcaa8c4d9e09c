"""`python -m circlefit`: the console script (circlefit.cli)."""

import sys

from circlefit.cli import main

sys.exit(main())
