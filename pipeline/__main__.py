"""`python -m pipeline ...` is the `racelens` command."""

import sys

from pipeline.cli import main

sys.exit(main())
