"""``python -m registry ...``: the command line of ``registry.cli``."""

import sys

from registry.cli import main

sys.exit(main())
