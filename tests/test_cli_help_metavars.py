"""Every name a command's --help text gives its arguments is a name its usage line shows.

A newcomer read `cfl-repo audit --help`: the usage said ``ACCESS_LOGS...``, the text described
``ACCESS_LOG``. This walks every command and group of `cfl-repo` and `cfl` and, in each one's help
text, finds the upper-case words that name an argument: the positional arguments' metavars of any
command in either tool, and a near miss of one of this command's own (``ACCESS_LOG`` beside
``ACCESS_LOGS``, ``PROPOSAL`` beside ``PROPOSAL_FILE``). Each must be a metavar this command's
usage or options show (a group's text may also name its subcommands').
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from client.cli.main import cli as cfl
from repo_tool.cli.main import cli as cfl_repo

WORD = re.compile(r"\b[A-Z][A-Z0-9_]*[A-Z0-9]\b")
# Near misses of a shown metavar: a plural, a singular, or one without its kind.
SUFFIXES = ("S", "_FILE", "_FILES", "_ID", "_DIR")
# The Central Products List, named in prose beside the CPL_FILE argument.
ACRONYMS = {"CPL"}
QUOTED = re.compile(r"`[^`\n]*`")


def _commands() -> Iterator[tuple[str, click.Command, click.Context]]:
    def walk(
        command: click.Command, ctx: click.Context, path: str
    ) -> Iterator[tuple[str, click.Command, click.Context]]:
        yield path, command, ctx
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None, f"{path} {name}"
                yield from walk(
                    sub, click.Context(sub, info_name=name, parent=ctx), f"{path} {name}"
                )

    for root, name in ((cfl_repo, "cfl-repo"), (cfl, "cfl")):
        yield from walk(root, click.Context(root, info_name=name), name)


COMMANDS = list(_commands())


def _shown(command: click.Command, ctx: click.Context) -> set[str]:
    """The upper-case words of the metavars the usage line and the options show."""
    words: set[str] = set()
    for param in command.params:
        if isinstance(param, click.Argument):
            words |= set(WORD.findall(param.make_metavar(ctx)))
        else:
            record = param.get_help_record(ctx)
            words |= set(WORD.findall(record[0])) if record else set()
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None
            words |= _shown(sub, click.Context(sub, info_name=name, parent=ctx))
    return words


def _argument_names() -> set[str]:
    names: set[str] = set()
    for _, command, ctx in COMMANDS:
        for param in command.params:
            if isinstance(param, click.Argument):
                # what the usage shows, and the name a usage of choices ({root|targets}) hides
                names |= set(WORD.findall(param.make_metavar(ctx)))
                names.add(param.human_readable_name)
    return names


ARGUMENT_NAMES = _argument_names()


def _near_miss(word: str, shown: set[str]) -> bool:
    return any(
        word + s in shown or (word.endswith(s) and word[: -len(s)] in shown) for s in SUFFIXES
    )


def _text(command: click.Command) -> str:
    """The help text without its `quoted` commands, which show other commands' usage."""
    return QUOTED.sub("", f"{command.help or ''}\n{command.epilog or ''}")


@pytest.mark.parametrize(("path", "command", "ctx"), COMMANDS, ids=[p for p, _, _ in COMMANDS])
def test_every_argument_the_help_text_names_is_in_the_usage(
    path: str, command: click.Command, ctx: click.Context
) -> None:
    shown = _shown(command, ctx)
    named = {
        word
        for word in WORD.findall(_text(command))
        if word not in ACRONYMS and (word in ARGUMENT_NAMES or _near_miss(word, shown))
    }
    assert named <= shown, (
        f"{path} --help names {sorted(named - shown)}, its usage shows {sorted(shown)}"
    )


def test_audit_names_its_argument_as_its_usage_does() -> None:
    result = CliRunner().invoke(cfl_repo, ["audit", "--help"])
    assert result.exit_code == 0
    assert "ACCESS_LOG..." in result.output
    assert "ACCESS_LOGS" not in result.output
