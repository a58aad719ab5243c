"""`cfl-repo status --prometheus` as an operator's timer runs it: the real command, the real clock.

The library is built 30 days in the past (time is injected into the factory), so the real clock
finds its manufacturer role, signed for 40 days, 10 days from expiry.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kill_points import KILLED, strace_killing_at
from prometheus_client.parser import text_string_to_metric_families

from conftest import require_system
from factory import LibraryFactory, make_entry, make_image, mi_sha
from metadata_templates.errors import EXIT_FAILURE, EXIT_USAGE

CFL_REPO = str(Path(sys.executable).parent / "cfl-repo")
DAY = 86400.0


def cfl_repo(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CFL_REPO", "CFL_KEY_PASSPHRASE")}
    return subprocess.run(
        [CFL_REPO, *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


def tree_digest(root: Path) -> str:
    """Every path and byte under ``root``: equal before and after means nothing changed."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> LibraryFactory:
    tmp = tmp_path_factory.mktemp("lib")
    image = make_image("121D", 2)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
    factory = LibraryFactory(tmp, now=start)
    factory.import_cpl([make_entry("CPL-0002", image_sha=mi_sha(image))])
    factory.add_manufacturer("121D")
    factory.publish()
    factory.deposit(image, ["CPL-0002"], expiry=timedelta(days=40))
    (tmp / "inbox").mkdir(exist_ok=True)
    return factory


def metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_status_prometheus_prints_the_library_on_stdout_and_nothing_else(
    library: LibraryFactory, tmp_path: Path
) -> None:
    repo = library.repo.path
    done = cfl_repo(
        "--repo", repo, "status", "--prometheus", "--inbox", repo.parent / "inbox", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # a timer's journal stays quiet while all is well
    found = metrics(done.stdout)
    remaining = found[
        ("cfl_role_expiry_seconds", (("renewed_by", "manufacturer"), ("role", "mfr-121D")))
    ]
    assert abs(remaining - 10 * DAY) < 3600  # about ten days, by the real clock
    assert found[("cfl_inbox_bundles", (("inbox", str(repo.parent / "inbox")),))] == 1
    # Published 30 days ago and never refreshed: what suppliers fetch has long expired.
    assert found[("cfl_published_expiry_seconds", (("role", "timestamp"),))] < -28 * DAY


def test_the_textfile_holds_exactly_what_stdout_shows(
    library: LibraryFactory, tmp_path: Path
) -> None:
    target = tmp_path / "textfile" / "cfl.prom"
    done = cfl_repo(
        "--repo",
        library.repo.path,
        "status",
        "--prometheus",
        "--prometheus-file",
        target,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert target.read_text() == done.stdout
    quiet = cfl_repo(
        "--repo", library.repo.path, "status", "--prometheus-file", target, cwd=tmp_path
    )
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == ""
    assert "cfl_role_expiry_seconds" in target.read_text()
    assert target.stat().st_mode & 0o777 == 0o644


def test_help_teaches_with_an_example(tmp_path: Path) -> None:
    done = cfl_repo("status", "--help", cwd=tmp_path)
    assert done.returncode == 0
    for needle in ("--prometheus-file", "--inbox", "Examples:", "cfl_role_expiry_seconds"):
        assert needle in done.stdout


BAD = [
    (["--prometheus", "--json"], EXIT_USAGE, "--json: found with --prometheus"),
    (["--prometheus-file", "{tmp}/cfl.prom", "--json"], EXIT_USAGE, "expected one output format"),
    (["--inbox", "{tmp}"], EXIT_USAGE, "--inbox: found without --prometheus"),
    (["--published", "{tmp}"], EXIT_USAGE, "--published: found without --prometheus"),
    (["--prometheus", "--inbox", "{tmp}/nowhere"], EXIT_USAGE, "found no such folder"),
    (["--prometheus", "--inbox", "{tmp}/cfl.prom"], EXIT_USAGE, "found not a folder"),
    (["--prometheus", "--published", "{tmp}/nowhere"], EXIT_USAGE, "--published {tmp}/nowhere"),
    (["--prometheus-file", "{tmp}/cfl.txt"], EXIT_USAGE, "expected a name ending .prom"),
    (["--prometheus-file", "{tmp}/folder.prom"], EXIT_USAGE, "is a folder"),
    (["--prometheus-file", "{tmp}/cfl.prom/x.prom"], EXIT_USAGE, "is a file, expected a folder"),
    (
        ["--prometheus-file", "{tmp}/cfl.prom", "--published", "{tmp}/bad"],
        EXIT_FAILURE,
        "expected a TUF timestamp",
    ),
]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    BAD,
    ids=[
        "json-and-prometheus",
        "json-and-file",
        "inbox-alone",
        "published-alone",
        "inbox-missing",
        "inbox-a-file",
        "published-missing",
        "file-not-prom",
        "file-a-folder",
        "file-under-a-file",
        "published-timestamp-corrupt",
    ],
)
def test_bad_options_give_one_error_line_and_change_nothing(
    library: LibraryFactory, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    textfile = tmp_path / "cfl.prom"
    textfile.write_text("cfl_log_entries 7.0\n")  # the previous run's file
    (tmp_path / "folder.prom").mkdir()
    (tmp_path / "bad" / "metadata").mkdir(parents=True)
    (tmp_path / "bad" / "metadata" / "timestamp.json").write_text("{}")
    repo = library.repo.path
    before = tree_digest(repo)
    done = cfl_repo("--repo", repo, "status", *(a.format(tmp=tmp_path) for a in args), cwd=tmp_path)
    assert done.returncode == code, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert message.format(tmp=tmp_path) in errors[0]
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert textfile.read_text() == "cfl_log_entries 7.0\n"  # the last good file stays
    assert tree_digest(repo) == before


def test_a_kill_at_any_write_leaves_the_old_or_the_new_textfile_and_a_rerun_succeeds(
    library: LibraryFactory, tmp_path: Path
) -> None:
    require_system("strace")
    target = tmp_path / "cfl.prom"
    target.write_text("cfl_log_entries 7.0\n")
    command = [
        CFL_REPO,
        "--repo",
        str(library.repo.path),
        "status",
        "--prometheus-file",
        str(target),
    ]
    for point in range(1, 20):
        done = subprocess.run(
            [*strace_killing_at(point), *command],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        text = target.read_text()
        # What a scrape would read at this instant: the previous file or the whole new one.
        assert text == "cfl_log_entries 7.0\n" or "cfl_status_timestamp_seconds" in text
        list(text_string_to_metric_families(text))
        if done.returncode not in KILLED:
            assert done.returncode == 0, done.stderr
            assert point > 2  # killed at the temporary file's fsync and at its rename, at least
            break
        rerun = cfl_repo(
            "--repo", library.repo.path, "status", "--prometheus-file", target, cwd=tmp_path
        )
        assert rerun.returncode == 0, rerun.stderr
        assert "cfl_status_timestamp_seconds" in target.read_text()
        target.write_text("cfl_log_entries 7.0\n")
    else:
        pytest.fail("status was still killed at its 19th rename or fsync")
    # A killed run may leave its temporary file; the collector reads only *.prom.
    assert [p.name for p in tmp_path.glob("*.prom")] == ["cfl.prom"]
