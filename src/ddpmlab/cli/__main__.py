"""``python -m ddpmlab.cli``: the command line."""

import sys

from ddpmlab.cli import main

sys.exit(main())
