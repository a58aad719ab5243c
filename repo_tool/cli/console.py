"""The `cfl-repo` command line's edge: one top-level error handler, the clock, the secrets prompt.

Commands raise; only `run` turns errors into ``error:``/``hint:`` lines and the named exit codes
(ARCHITECTURE "Stable outputs"), so no command can forget to, and a traceback appears only with -v.
"""

from __future__ import annotations

import errno
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from metadata_templates.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    CflError,
    ConfigurationError,
    RejectedInputError,
)
from metadata_templates.locking import LockPolicy, describe_command
from metadata_templates.output import json_document
from metadata_templates.steps import failed_step
from repo_tool.signing.secrets import HSM_PIN_ENV, PASSPHRASE_ENV, environment_secret

if TYPE_CHECKING:
    from repo_tool.state.repository import Repository

EXIT_INTERRUPTED = 130

logger = logging.getLogger("repo_tool")


# The key of click's context object under which a caller that runs commands in its own process
# (a benchmark replaying months of deposits) hands in its clock: ``cli.main(args, obj={CLOCK:
# f})``. Nothing a user types or sets in the environment reaches it.
CLOCK = "clock"


def utc_now() -> datetime:
    """The real clock, read only here at the edge and passed inward as ``now``; or the clock the
    in-process caller handed in (``CLOCK``)."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    if isinstance(obj, dict) and callable(obj.get(CLOCK)):
        return obj[CLOCK]()  # type: ignore[no-any-return]
    return datetime.now(UTC).replace(microsecond=0)


def err(message: str) -> None:
    """A line for people: stderr, so stdout stays one JSON document for scripts."""
    click.echo(message, err=True)


def emit_json(doc: dict[str, Any]) -> None:
    """The one JSON document a ``--json`` command prints on stdout."""
    click.echo(json_document(doc))


def prompt_secret(name: str) -> str:
    """The secrets handler signers call: an environment variable or a systemd credential for
    unattended runs (cron, deploy/*.service; repo_tool/signing/secrets.py), else a hidden prompt
    on a terminal.

    Raises:
        ConfigurationError: a secret is needed, none is in the environment and stdin is no terminal.
    """
    env = HSM_PIN_ENV if name.lower() == "pin" else PASSPHRASE_ENV
    secret = environment_secret(env)
    if secret is not None:
        return secret
    if not sys.stdin.isatty():
        raise ConfigurationError(f"a {name} is needed but stdin is not a terminal; set {env}")
    return str(click.prompt(f"Enter {name}", hide_input=True, err=True))


def repo_path(ctx: click.Context) -> Path:
    """The ``--repo`` of this command line.

    Raises:
        ConfigurationError: none was given.
    """
    path: Path | None = ctx.find_root().obj.get("repo")
    if path is None:
        raise ConfigurationError("this command needs --repo R (the repository working directory)")
    return path


def lock_policy(ctx: click.Context) -> LockPolicy:
    """How this command records itself in a lock file (its command line: the console script's
    argv, else the command's name) and how long it waits for one (``--wait``), with a progress
    line on stderr while it does."""
    root = ctx.find_root().obj or {}
    argv = root.get("argv")
    command = describe_command("cfl-repo", argv) if argv is not None else ctx.command_path
    return LockPolicy(command=command, wait=float(root.get("wait") or 0), on_wait=err)


def open_repo(ctx: click.Context) -> Repository:
    """The repository ``--repo`` names, with the secrets and lock policies of every command."""
    from repo_tool.state.repository import Repository

    return Repository.open(repo_path(ctx), secrets_handler=prompt_secret, lock=lock_policy(ctx))


def read_input(path: Path, what: str, *, limit: int | None = None) -> bytes:
    """An input file's bytes, or one error line naming the option and the path.

    Args:
        path: the file.
        what: the option or argument that named it, for the message.
        limit: the most bytes accepted; more is refused after reading one byte past it, so an
            endless or huge file (/dev/zero, a sparse file) never fills memory.

    Raises:
        ConfigurationError: the file cannot be read.
        RejectedInputError: the file is larger than ``limit``.
    """
    try:
        if limit is None:
            return path.read_bytes()
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as e:
        raise ConfigurationError(f"{what} {path}: cannot read ({e.strerror})") from e
    if len(data) > limit:
        raise RejectedInputError(
            f"{what} {path}: size: found more than {limit} bytes, expected at most {limit}"
        )
    return data


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL_HINT = (
    "the file system is full: free space on it, then run the same command again "
    "(nothing half-written was left under a final name)"
)


def _disk_full(error: BaseException | None) -> bool:
    """Whether a full disk (or quota) is what ``error`` comes down to, through its causes."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) and error.errno in _DISK_FULL:
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def os_error_line(e: OSError) -> str:
    """``STEP: PATH: reason`` for a file-system failure, with whichever of step and path it has."""
    parts = [failed_step(e), e.filename and str(e.filename), e.strerror or str(e)]
    return ": ".join(p for p in parts if p)


def run(group: click.Command, *, interrupted: str, args: list[str] | None = None) -> None:
    """Run the command line (``args``, default ``sys.argv``) and exit with the code its outcome
    maps to."""
    argv = list(sys.argv[1:] if args is None else args)
    try:
        group.main(args=argv, standalone_mode=False, obj={"argv": argv})
    except CflError as e:
        if logger.isEnabledFor(logging.DEBUG):
            logger.exception("details")
        err(f"error: {e}")
        hint = e.hint or (DISK_FULL_HINT if _disk_full(e) else None)
        if hint:
            err(f"hint: {hint}")
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except RecursionError as e:
        # json refuses input nested deeper than the interpreter's stack; every file we read is
        # shallow, so this is hostile or corrupt input (a proposal, a configuration file).
        err(f"error: an input file is nested too deeply to be one of ours ({e})")
        sys.exit(EXIT_FAILURE)
    except (click.exceptions.Abort, KeyboardInterrupt):
        err(f"error: interrupted; {interrupted}")
        sys.exit(EXIT_INTERRUPTED)
    except OSError as e:
        # A file-system failure no command anticipated: still one line naming the step and path.
        if logger.isEnabledFor(logging.DEBUG):
            logger.exception("details")
        err(f"error: {os_error_line(e)}")
        if _disk_full(e):
            err(f"hint: {DISK_FULL_HINT}")
        sys.exit(EXIT_FAILURE)
    sys.exit(EXIT_OK)
