"""Helpers for the command-line tests: run ``pyrogen`` in-process and read its JSON."""

import json

from pyrogen.cli import main


def run(capsys, *argv):
    """Run ``pyrogen ARGV``; return its exit code, stdout and stderr."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def last_json(out):
    """The JSON object on the last line that a command printed."""
    return json.loads(out.strip().splitlines()[-1])
