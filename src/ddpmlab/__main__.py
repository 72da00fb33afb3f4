"""``python -m ddpmlab``: the command line, as torchrun starts it (``torchrun -m ddpmlab``)."""

import sys

from ddpmlab.cli import main

sys.exit(main())
