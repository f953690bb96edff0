"""``python -m inspector VERB ...``: the same as the ``inspector`` console script (handy from a checkout)."""

import sys

from inspector.cli import main

sys.exit(main())
