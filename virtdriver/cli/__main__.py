"""python -m virtdriver.cli: the same as the virtdriver console script."""

import sys

from virtdriver.cli import main

sys.exit(main())
