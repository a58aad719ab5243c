"""deploy/'s systemd units: systemd accepts them, they are hardened, and what they start works.

`systemd-analyze verify` judges the files as systemd would (unknown keys, bad values, missing
programs). The unattended provider then runs for real: each unit's ExecCondition and ExecStart,
expanded from deploy/cfl.env as systemd expands them, with the credential folder systemd would
make for LoadCredential= and nothing else secret, on a repository whose online keys are encrypted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_units import (
    DEPLOY,
    INSTALLED_CFL_REPO,
    SERVICES,
    command_words,
    read_env_file,
    read_unit,
    service,
)
from exporter import scrape_textfile
from prometheus_client.parser import text_string_to_metric_families

from conftest import require_system
from repo_tool.signing.secrets import CREDENTIAL_FOR, CREDENTIALS_ENV, PASSPHRASE_ENV

BIN = Path(sys.executable).parent
CFL_REPO = str(BIN / "cfl-repo")
PASSPHRASE = "the online keys' passphrase"
SIGNERS = ("cfl-publish", "cfl-refresh")
WRITERS = ("cfl-ingest", *SIGNERS)  # the units that take the repository lock


def test_systemd_analyze_verify_accepts_every_unit(tmp_path: Path) -> None:
    require_system("systemd-analyze")
    # The one change: the program path of this test's environment for the installed one, since
    # verify checks that every command exists.
    for unit in sorted([*DEPLOY.glob("cfl-*.service"), *DEPLOY.glob("cfl-*.timer")]):
        text = unit.read_text().replace(INSTALLED_CFL_REPO, CFL_REPO)
        (tmp_path / unit.name).write_text(text)
    units = sorted(str(p) for p in tmp_path.iterdir())
    assert len(units) == 2 * len(SERVICES)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "--generators=no", *units],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # verify exits 0 on mere warnings (an unknown key is "ignored"): any output is a finding.
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_is_hardened_and_runs_as_the_cfl_user(name: str) -> None:
    unit = service(name)
    expected = {
        "Type": ["oneshot"],
        "User": ["cfl"],
        "Group": ["cfl"],
        "EnvironmentFile": ["/etc/cfl/cfl.env"],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "PrivateDevices": ["yes"],
        "PrivateNetwork": ["yes"],
        "CapabilityBoundingSet": [""],
        "RestrictSUIDSGID": ["yes"],
        "SystemCallFilter": ["@system-service"],
    }
    assert {key: unit.get(key) for key in expected} == expected
    assert "Environment" not in unit  # nothing set inline: paths in cfl.env, secrets credentials


@pytest.mark.parametrize("name", SERVICES)
def test_each_timer_starts_its_service_and_catches_up_after_downtime(name: str) -> None:
    timer = read_unit(DEPLOY / f"{name}.timer")
    assert (DEPLOY / f"{name}.service").is_file()
    assert timer["Timer"]["Persistent"] == ["true"]
    assert len(timer["Timer"]["OnCalendar"]) == 1
    assert timer["Install"]["WantedBy"] == ["timers.target"]


def _writable(name: str) -> list[Path]:
    return [Path(p) for line in service(name)["ReadWritePaths"] for p in line.split()]


def _covered(path: Path, allowed: list[Path]) -> bool:
    return any(path == a or a in path.parents for a in allowed)


def test_each_service_may_write_exactly_where_cfl_env_says_it_writes() -> None:
    env = {k: Path(v) for k, v in read_env_file().items()}
    textfile_dir = env["CFL_TEXTFILE"].parent
    assert _covered(env["CFL_REPO"], _writable("cfl-ingest"))
    # The inbox is what outsiders write; ingest only reads it, so it stays read-only.
    assert not _covered(env["CFL_INBOX"], _writable("cfl-ingest"))
    assert not _covered(env["CFL_PUBLIC"], _writable("cfl-ingest"))
    for name in SIGNERS:
        assert _covered(env["CFL_REPO"], _writable(name))
        assert _covered(env["CFL_PUBLIC"], _writable(name))
    assert _writable("cfl-status") == [textfile_dir]  # status writes its one file, nothing else


def test_only_the_services_that_sign_get_the_passphrase() -> None:
    expected = (
        f"{CREDENTIAL_FOR[PASSPHRASE_ENV]}:/etc/cfl/credentials/{CREDENTIAL_FOR[PASSPHRASE_ENV]}"
    )
    for name in SERVICES:
        found = service(name).get("LoadCredential", [])
        assert found == ([expected] if name in SIGNERS else []), name


def _exec_start(name: str) -> tuple[list[str], list[str]]:
    """A unit's ExecStart as (cfl-repo's global options, the command and its arguments)."""
    (start,) = service(name)["ExecStart"]
    words = command_words(start, read_env_file())
    assert words[0] == INSTALLED_CFL_REPO
    rest = words[1:]
    options: list[str] = []
    while rest[:1] == ["--wait"]:
        options, rest = [*options, *rest[:2]], rest[2:]
    return options, rest


@pytest.mark.parametrize("name", SERVICES)
def test_every_exec_start_is_a_cfl_repo_command_line(name: str, tmp_path: Path) -> None:
    options, command = _exec_start(name)
    # --help is handled once the whole line has parsed: an unknown command or option fails.
    done = subprocess.run(
        [CFL_REPO, *options, *command, "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"Usage: cfl-repo {command[0]} " in done.stdout


@pytest.mark.parametrize("name", WRITERS)
def test_every_writer_waits_for_the_repository_lock_rather_than_failing(name: str) -> None:
    # Overlapping timers (a publish still running at the next ingest, a person's withdraw) would
    # otherwise fail the unit, and a refresh that fails lets the timestamp run out.
    options, _command = _exec_start(name)
    assert options[:1] == ["--wait"], options
    # At least one period of the most frequent writer's timer (15 minutes).
    assert float(options[1]) >= 900


# ---------------------------------------------------------------- the unattended provider, for real


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        stdin=subprocess.DEVNULL,
    )


class Host:
    """A machine laid out as docs/operator.md's deployment, under one temporary folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env_file = {k: str(root / v.lstrip("/")) for k, v in read_env_file().items()}
        self.credentials = root / "run" / "credentials"
        self.base = {
            k: v
            for k, v in os.environ.items()
            if k not in ("CFL_REPO", PASSPHRASE_ENV, "CFL_HSM_PIN", CREDENTIALS_ENV)
        } | {"PATH": f"{BIN}:{os.environ.get('PATH', '')}"}

    def setup(self, *args: str) -> None:
        """An operator's command at the console (the passphrase typed in, as CFL_KEY_PASSPHRASE)."""
        done = _run(["cfl-repo", *args], self.root, self.base | {PASSPHRASE_ENV: PASSPHRASE})
        assert done.returncode == 0, (args, done.stderr)

    def unit_env(self, name: str) -> dict[str, str]:
        env = self.base | self.env_file
        if "LoadCredential" in service(name):
            env[CREDENTIALS_ENV] = str(self.credentials)
        return env

    def start(self, name: str, env: dict[str, str] | None = None) -> list[int]:
        """What `systemctl start NAME.service` runs: ExecCondition lines, then ExecStart unless a
        condition said skip. Returns their exit codes."""
        unit = service(name)
        env = env if env is not None else self.unit_env(name)
        codes: list[int] = []
        for key in ("ExecCondition", "ExecStart"):
            for line in unit.get(key, []):
                words = command_words(line, env)
                if words[0] == INSTALLED_CFL_REPO:
                    words[0] = CFL_REPO
                done = _run(words, self.root, env)
                codes.append(done.returncode)
                self.last = done
                if done.returncode != 0:
                    return codes
        return codes


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Host:
    machine = Host(tmp_path_factory.mktemp("host"))
    env = machine.env_file
    for folder in ("CFL_INBOX", "CFL_PUBLIC"):
        Path(env[folder]).mkdir(parents=True)
    Path(env["CFL_TEXTFILE"]).parent.mkdir(parents=True)
    keys = machine.root / "etc" / "cfl" / "keys"
    keys.mkdir(parents=True)
    init: list[str] = []
    for role in ("root", "targets", "snapshot", "timestamp", "cfl-provider"):
        # root and targets stand in for the holders' offline tokens; the online keys are encrypted.
        plain = ["--no-encrypt"] if role in ("root", "targets") else []
        machine.setup("keygen", *plain, str(keys / f"{role}.pem"))
        scheme = "file2" if plain else "encfile"
        init += ["--key", role, str(keys / f"{role}.pub.pem"), f"{scheme}:{keys / role}.pem"]
    repo = env["CFL_REPO"]
    machine.setup("--repo", repo, "init", "--root-threshold", "1", *init)
    machine.setup("demo-data", "demo")
    machine.setup("--repo", repo, "cpl", "import", "demo/cpl.csv")
    machine.setup("keygen", "--no-encrypt", "acme-1.pem")
    machine.setup(
        "--repo", repo, "manufacturer", "add", "121D", "--name", "Acme", "--key", "acme-1.pub.pem"
    )
    machine.setup("--repo", repo, "publish", "--out", env["CFL_PUBLIC"])
    machine.credentials.mkdir(parents=True)
    (machine.credentials / CREDENTIAL_FOR[PASSPHRASE_ENV]).write_text(PASSPHRASE + "\n")
    return machine


def _deposit(host: Host) -> None:
    public = host.env_file["CFL_PUBLIC"]
    host.setup(
        "submit",
        "demo/images/121D-ESME-010A030B-01020000.ota",
        "--manufacturer",
        "121D",
        "--key",
        "acme-1.pem",
        "--cpl-entry",
        "CPL-000105",
        "--cpl-entry",
        "CPL-000106",
        "--reason",
        "security",
        "--advisory",
        "CFL-SA-2026-001",
        "--from",
        public,
        "--root",
        f"{public}/metadata/1.root.json",
        "--out",
        f"{host.env_file['CFL_INBOX']}/121D-01020000.cflb",
    )


@pytest.mark.slow
def test_the_unattended_provider_ingests_publishes_refreshes_and_reports(host: Host) -> None:
    # An empty inbox: the condition skips the run rather than failing the unit.
    assert host.start("cfl-ingest") == [1]
    _deposit(host)
    # Ingest signs nothing and holds no credential; a signer without its credential cannot sign.
    assert host.start("cfl-ingest") == [0, 0], host.last.stderr
    assert "accepted" in host.last.stderr
    without = host.base | host.env_file
    assert host.start("cfl-publish", env=without) == [2]
    assert PASSPHRASE_ENV in host.last.stderr
    assert host.start("cfl-publish") == [0], host.last.stderr
    assert host.start("cfl-refresh") == [0], host.last.stderr
    assert host.start("cfl-status") == [0], host.last.stderr
    text = Path(host.env_file["CFL_TEXTFILE"]).read_text()
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    manufacturer = (
        "cfl_role_expiry_seconds",
        (("renewed_by", "manufacturer"), ("role", "mfr-121D")),
    )
    assert found[manufacturer] > 300 * 86400
    assert found[("cfl_inbox_bundles", (("inbox", host.env_file["CFL_INBOX"]),))] == 1
    assert found[("cfl_unpublished_roles", ())] == 0
    assert 0 < found[("cfl_published_expiry_seconds", (("role", "timestamp"),))] <= 86400
    assert found[("cfl_rejected_bundles_total", ())] == 0


@pytest.mark.slow
def test_a_unit_started_while_the_lock_is_held_waits_for_it_and_succeeds(host: Host) -> None:
    # A real process holds R/.lock (a person's command, say) when the timer fires: the refresh
    # says on stderr (the journal) for whom it waits, and runs once the holder lets go.
    env = host.unit_env("cfl-refresh")
    (start,) = service("cfl-refresh")["ExecStart"]
    words = command_words(start, env)
    holding = [
        sys.executable,
        "-c",
        "import sys; from pathlib import Path\n"
        "from metadata_templates.locking import LockPolicy, exclusive_lock\n"
        "with exclusive_lock(Path(sys.argv[1]), subject='the repository',"
        " policy=LockPolicy(command='cfl-repo withdraw (a person)')):\n"
        "    print('held', flush=True); sys.stdin.read()\n",
        str(Path(host.env_file["CFL_REPO"]) / ".lock"),
    ]
    with subprocess.Popen(
        holding, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=host.base
    ) as holder:
        assert holder.stdin is not None and holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        with subprocess.Popen(
            [CFL_REPO, *words[1:]],
            cwd=host.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as refresh:
            try:
                assert refresh.stderr is not None
                seen = [refresh.stderr.readline()]
                while seen[-1] and not seen[-1].startswith("waiting for "):
                    seen.append(refresh.stderr.readline())
                assert seen[-1].startswith(
                    "waiting for the repository: cfl-repo withdraw (a person) (PID "
                ), seen
                assert refresh.poll() is None  # still waiting, not failed
            except BaseException:
                refresh.kill()  # not 900 seconds of waiting for a holder that never lets go
                raise
            holder.stdin.close()  # the person's command ends
            assert holder.wait(timeout=60) == 0
            _out, rest = refresh.communicate(timeout=300)
    assert refresh.returncode == 0, "".join(seen) + rest


@pytest.mark.slow
def test_node_exporter_serves_the_textfile_without_a_scrape_error(host: Host) -> None:
    require_system("prometheus-node-exporter")
    if host.start("cfl-status") != [0]:
        pytest.fail(host.last.stderr)
    metrics = scrape_textfile(Path(host.env_file["CFL_TEXTFILE"]).parent)
    assert "node_textfile_scrape_error 0" in metrics
    assert 'cfl_role_expiry_seconds{renewed_by="ceremony",role="root"}' in metrics
    assert "cfl_rejected_bundles_total 0" in metrics


def test_the_container_image_builds_the_wheel_and_runs_unprivileged() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    lines = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms == ["FROM python:3.11-slim AS build", "FROM python:3.11-slim"]
    final = lines[lines.index(froms[-1]) :]
    users = [line for line in final if line.startswith("USER ")]
    assert users and users[-1].split()[1].split(":")[0] not in ("0", "root")
    assert 'ENTRYPOINT ["/opt/cfl/venv/bin/cfl-repo"]' in final
    assert any("python -m build --wheel" in line for line in lines)
    # Everything copied into the build exists, and nothing copied is a key or a repository.
    copied = [
        w
        for line in lines
        if line.startswith("COPY ") and "--from" not in line
        for w in line.split()[1:-1]
    ]
    root = DEPLOY.parent
    assert copied and all((root / c).exists() for c in copied)
    ignore = (DEPLOY / "Containerfile.dockerignore").read_text().splitlines()
    assert "**" in ignore and "**/*.pem" in ignore
