"""`python -m latentops` runs the latentops command (see latentops.cli)."""

import sys

from latentops.cli import main

sys.exit(main())
