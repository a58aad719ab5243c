"""The root group imports commands when they run (issue 26), and its `--help` does not change.

`cfl-repo --help` is rendered from the table in repo_tool/cli/main.py; these tests hold that table
to the real commands so a docstring edited in a command module cannot drift from the listing.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from repo_tool.cli.main import COMMANDS, cli

ROOT = Path(__file__).resolve().parents[2]
RUN = "from repo_tool.cli.main import main; main()"
# What the start-up of `cfl-repo` used to pay for, none of which the root's `--help` needs.
HEAVY = ("tuf", "securesystemslib", "boto3", "botocore", "jsonschema", "jinja2", "cryptography")


def _real(name: str) -> click.Command:
    module_name, _, attribute = COMMANDS[name][0].partition(":")
    command = getattr(importlib.import_module(module_name), attribute)
    assert isinstance(command, click.Command)
    return command


def _cfl_repo(*args: str, columns: int = 100) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": str(columns)}
    return subprocess.run(
        [sys.executable, "-c", RUN, *args], capture_output=True, text=True, env=env, check=False
    )


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_table_short_help_is_the_commands_own_at_every_width(name: str) -> None:
    command = _real(name)
    assert command.name == name
    stand_in = click.Command(name, help=COMMANDS[name][1])
    for limit in range(1, 240):
        assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit), limit


def test_loading_every_command_adds_none_outside_the_table() -> None:
    for name in cli.list_commands(click.Context(cli)):
        assert cli.get_command(click.Context(cli), name) is not None
    assert sorted(cli.commands) == sorted(COMMANDS)


@pytest.mark.parametrize("columns", [50, 80, 100, 160])
def test_root_help_is_byte_identical_to_the_eager_listing(columns: int) -> None:
    # The lazy listing comes from a fresh process that has loaded nothing; the eager one from
    # a plain click.Group holding every real command, rendered at the same width.
    lazy = _cfl_repo("--help", columns=columns)
    assert lazy.returncode == 0, lazy.stderr
    eager_group = click.Group(
        name=cli.name,
        params=cli.params,
        help=cli.help,
        context_settings=cli.context_settings,
        commands={name: _real(name) for name in COMMANDS},
    )
    # click's own rule for a terminal `columns` wide (click.HelpFormatter without a width).
    width = max(min(columns, cli.context_settings["max_content_width"]) - 2, 50)
    ctx = click.Context(
        eager_group, info_name="-c", terminal_width=width, help_option_names=["-h", "--help"]
    )
    assert lazy.stdout == eager_group.get_help(ctx) + "\n"


def test_root_help_imports_no_command_module_and_no_heavy_library() -> None:
    probe = (
        "import sys\n"
        "from repo_tool.cli.main import cli\n"
        "try:\n"
        "    cli(['--help'], standalone_mode=False)\n"
        "finally:\n"
        f"    heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "    commands = sorted(m for m in sys.modules if m.startswith('repo_tool.cli.')\n"
        "                      and m not in ('repo_tool.cli.main', 'repo_tool.cli.console'))\n"
        "    print(repr((heavy[:5], commands)), file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    assert done.stderr.strip().splitlines()[-1] == "([], [])"


def test_a_command_loads_only_its_own_module() -> None:
    probe = (
        "import sys\n"
        "from repo_tool.cli.main import cli\n"
        "cli(['keygen', '--help'], standalone_mode=False)\n"
        "print(sorted(m for m in sys.modules if m.startswith('repo_tool.cli.')), file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    loaded = done.stderr.strip().splitlines()[-1]
    assert "repo_tool.cli.submit" in loaded
    assert "repo_tool.cli.ceremony" not in loaded
    assert "repo_tool.cli.advisory" not in loaded


def test_manufacturer_group_is_assembled_from_its_modules() -> None:
    shown = _cfl_repo("manufacturer", "--help")
    assert shown.returncode == 0, shown.stderr
    for sub in ("add", "enrol", "resume", "retire-keys", "rotate-key", "suspend"):
        assert f"  {sub} " in shown.stdout, sub


def test_an_unknown_command_is_a_usage_error_naming_it() -> None:
    shown = _cfl_repo("no-such-command")
    assert shown.returncode == 2
    assert "no-such-command" in shown.stderr
    assert "Traceback" not in shown.stderr
