"""The README documents every command and the test command CI runs."""

import re

from search.cli.app import cli
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text()


def test_every_command_is_in_the_readme():
    missing = [name for name in cli.commands if f"dinosearch {name}" not in README]
    assert not missing, f"commands missing from README.md: {missing}"


def test_every_command_help_has_an_example():
    for name, command in cli.commands.items():
        assert "dinosearch" in (command.help or ""), f"{name} --help has no example"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    block = re.search(r"## Test it\n+```bash\n(.*?)```", README, re.S).group(1)
    command = block.strip().splitlines()[-1]
    assert command in ci
