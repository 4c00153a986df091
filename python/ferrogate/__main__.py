"""``python -m ferrogate``: the command line."""

import sys

from ferrogate.cli import main

sys.exit(main())
