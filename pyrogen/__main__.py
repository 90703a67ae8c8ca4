"""``python -m pyrogen``: the same as the ``pyrogen`` command."""

import sys

from pyrogen.cli import main

if __name__ == "__main__":
    sys.exit(main())
