"""Every `pyrogen` command in the README parses: no option it shows is unknown to the family."""

import re
import shlex
from pathlib import Path

import pytest

from pyrogen.cli_parser import build_parser, unknown_option_message

README = Path(__file__).parent.parent / "README.md"


def _commands() -> list[str]:
    text = README.read_text().replace("\\\n", " ")
    found = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("#")[0].strip()
            if "pyrogen " in line and "..." not in line:
                found.append(line[line.index("pyrogen ") + len("pyrogen "):])
    return found


COMMANDS = _commands()


def test_the_readme_has_commands():
    assert len(COMMANDS) > 15


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_parses(command, capsys):
    if "--help" in command.split():
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_known_args(shlex.split(command))
        assert exit_info.value.code == 0 and "usage: pyrogen" in capsys.readouterr().out
        return
    args, unknown = build_parser().parse_known_args(shlex.split(command))
    assert not unknown, unknown_option_message(getattr(args, "family", ""), unknown)
