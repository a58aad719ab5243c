"""Reading deploy/'s systemd units the way systemd does, for the deployment tests.

Only the parts the units use: sections, repeated keys kept in order, ``#``/``;`` comments, an
``EnvironmentFile=`` of ``NAME=value`` lines, and the command-line rules of systemd.service(5):
words split as a shell would (quotes), ``${NAME}`` replaced from the environment, ``$$`` a literal
``$``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SERVICES = ("cfl-ingest", "cfl-publish", "cfl-refresh", "cfl-status")
INSTALLED_CFL_REPO = "/opt/cfl/venv/bin/cfl-repo"
_EXPAND = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

Unit = dict[str, dict[str, list[str]]]


def read_unit(path: Path) -> Unit:
    sections: Unit = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: {line!r} is not KEY=VALUE"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def service(name: str) -> dict[str, list[str]]:
    return read_unit(DEPLOY / f"{name}.service")["Service"]


def read_env_file(path: Path = DEPLOY / "cfl.env") -> dict[str, str]:
    env: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    return env


def command_words(line: str, env: dict[str, str]) -> list[str]:
    """An Exec*= line as the argument vector systemd starts."""
    assert line[:1] not in "-@+!:", f"unexpected Exec prefix in {line!r}"

    def expand(match: re.Match[str]) -> str:
        return "$" if match.group(0) == "$$" else env[match.group(1)]

    return [_EXPAND.sub(expand, word) for word in shlex.split(line)]
