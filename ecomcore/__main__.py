"""``python -m ecomcore``: the same command line as the ``ecomcore`` console script."""

import sys

from ecomcore.cli import main

if __name__ == "__main__":
    sys.exit(main())
