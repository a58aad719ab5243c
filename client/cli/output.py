"""How `cfl` reports: one JSON document on stdout, people's text on stderr, and one top-level
handler that turns every error into ``error:``/``hint:`` lines and its named exit code.

Commands raise; only ``CflGroup.invoke`` decides what the user sees and the exit status (pip's
``base_command.py`` pattern). A traceback is shown only with ``-v``.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console

from client.trust.home import ClientHome
from metadata_templates.errors import EXIT_FAILURE, CflError
from metadata_templates.locking import WAIT_ENV, LockPolicy, describe_command
from metadata_templates.output import json_document

logger = logging.getLogger("client")

EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT


def utc_now() -> datetime:
    """The real clock, read only at the command-line edge and passed inward as ``now``."""
    return datetime.now(UTC).replace(microsecond=0)


def emit_json(doc: dict[str, Any]) -> None:
    """Print one ``--json`` document on stdout."""
    click.echo(json_document(doc))


def say(text: str) -> None:
    """One line for people, on stderr."""
    click.echo(text, err=True)


def _report(message: str, hint: str | None) -> None:
    print(f"error: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


class CflGroup(click.Group):
    """The `cfl` command group, with the one error handler every command runs under.

    ``CflError`` -> its exit code; an ``OSError`` that escaped a command (a file the user named
    vanished, a folder is not writable) -> exit 1 naming the file; Ctrl-C -> 130. Anything else is
    a bug and keeps its traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, mapping errors to ``error:`` lines and exit codes."""
        try:
            return super().invoke(ctx)
        except CflError as e:
            self._debug()
            _report(str(e), e.hint)
            ctx.exit(e.exit_code)
        except OSError as e:
            self._debug()
            where = f"{e.filename}: " if e.filename else ""
            _report(f"{where}{e.strerror or e}", "check the path and its permissions")
            ctx.exit(EXIT_FAILURE)
        except RecursionError as e:
            # json refuses input nested deeper than the stack: a hostile or corrupt file.
            self._debug()
            _report(f"an input file is nested too deeply to be one of ours ({e})", None)
            ctx.exit(EXIT_FAILURE)
        except KeyboardInterrupt:
            _report("interrupted; nothing half-written was left under a final name", None)
            ctx.exit(EXIT_INTERRUPTED)

    @staticmethod
    def _debug() -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.exception("details")


# People read stderr; rich renders the tables and summaries there.
stderr = Console(stderr=True, highlight=False)


def home_of(ctx: click.Context) -> ClientHome:
    """The supplier's home the top-level ``--home`` option chose."""
    home: ClientHome = ctx.obj["home"]
    return home


# The global --wait of `cfl` (and, with its own help, of `cfl-repo`): how long to wait for a lock
# another process holds. Interactive use fails at once and names the holder; cron passes --wait.
wait_option = click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0,
    envvar=WAIT_ENV,
    metavar="SECONDS",
    help=f"Wait up to SECONDS for the home's lock when another cfl holds it (env {WAIT_ENV}; "
    "default 0: fail at once, naming the other process). E.g. cron: cfl --wait 600 refresh.",
)


def lock_policy(ctx: click.Context, program: str, wait: float) -> LockPolicy:
    """How this run records itself in a lock file and waits: its command line (from the console
    script's argv, else the command's name), and progress lines on stderr while it waits."""
    argv = (ctx.obj or {}).get("argv")
    command = (
        describe_command(program, argv)
        if argv is not None
        else f"{program} {ctx.invoked_subcommand or ''}".strip()
    )
    return LockPolicy(command=command, wait=wait, on_wait=say)


# Every command that reads the library may work from the home alone.
offline_option = click.option(
    "--offline",
    is_flag=True,
    help="Use only the trusted metadata and cache in the home (no network); expired metadata is still refused.",
)


def notes_key(ctx: click.Context) -> Any:
    """The organisation's key from the home's configuration (`cfl init --notes-key`, else the
    --client-key) for release notes and advisory detail; asks for a passphrase if it needs one."""
    from client.notes.release_notes import load_notes_key, notes_key_path

    config = home_of(ctx).load_config()
    path = notes_key_path(config.client_key, config.notes_key)
    return load_notes_key(
        path, lambda: str(click.prompt(f"Passphrase for {path}", hide_input=True, err=True))
    )
