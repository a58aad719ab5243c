"""`cfl refresh --help` and `cfl-repo publish --help` say what each does with the transparency log.

A newcomer found neither mentioned it: refresh proves the log consistent (and the withdrawal
search complete), download proves each image's inclusion; publish writes the log before the
timestamp and deletes superseded partial tiles (docs/transparency.md).
"""

from __future__ import annotations

from click.testing import CliRunner

from client.cli.main import cli as cfl
from repo_tool.cli.main import cli as cfl_repo


def _help(cli: object, *args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--help"], terminal_width=200)  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_refresh_help_names_the_log_checks() -> None:
    text = _help(cfl, "refresh")
    assert "proved consistent with the checkpoint this home trusted last" in text
    assert "witnesses" in text
    assert "inclusion in the log is proved when `cfl download` fetches it" in text


def test_publish_help_names_the_log_steps() -> None:
    text = _help(cfl_repo, "publish")
    assert "The transparency log goes out before timestamp.json" in text
    assert "Superseded partial tiles (log/tile/.../<N>.p/<W>) are deleted" in text
