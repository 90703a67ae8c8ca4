"""``python -m pyrogen``: the same as the ``pyrogen`` command."""

from pyrogen.cli import console

if __name__ == "__main__":
    console()
