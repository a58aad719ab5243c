"""Paste a guide's shell blocks into one shell, in order, as a newcomer would, and report each.

    .venv/bin/python scripts/run_guide.py docs/operator.md [--workdir DIR] [--show]

Every ```sh block runs in one bash process (so `cd`, `export` and files carry over from block to
block), in a fresh temporary folder unless --workdir names one, with the repository's .venv/bin first
on PATH, stdin from /dev/null, and CFL_KEY_PASSPHRASE set to stand in for the passphrase a person
types at each prompt (`keygen` without --no-encrypt, `notes grant`). Blocks fenced as plain ``` are
templates for real deployments (placeholders, HSM URIs) and are not run; ```cron and ```json are not
shell input. Prints each block's first line, its exit status and, on failure (or with --show), its
output, to compare with what the guide says; exits 1 if any block failed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```sh\n(.*?)^```$", re.DOTALL | re.MULTILINE)
MARK = "__cfl_guide_block__"


def blocks(text: str) -> list[tuple[int, str]]:
    """(line number, body) of every ```sh block."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in FENCE.finditer(text)]


def script(found: list[tuple[int, str]]) -> str:
    """One bash script: each block, then a marker line with its number and exit status."""
    parts = [
        "set +e",
        f"export PATH={ROOT / '.venv' / 'bin'}:$PATH",
        # Any failing command in a block marks the block failed, not just its last one.
        "trap 'failed=$?' ERR",
    ]
    for number, (_, body) in enumerate(found):
        # A group, not a subshell, keeps `cd` and `export` for the blocks after it.
        parts.append(f"failed=0\n{{\n{body}\n}} >&2\necho {MARK} {number} $failed >&2")
    parts.append("kill $(jobs -p) 2>/dev/null; exit 0")
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("guide", type=Path)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--show", action="store_true", help="Print every block's output.")
    args = parser.parse_args()
    found = blocks(args.guide.read_text())
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cfl-guide-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CFL_REPO", "CFL_HOME", "CFL_KEY_PASSPHRASE", "CFL_HSM_PIN")
    }
    runner = workdir / ".guide.sh"
    runner.write_text(script(found))
    done = subprocess.run(
        ["bash", str(runner)],
        stdin=subprocess.DEVNULL,
        cwd=workdir,
        env=env | {"COLUMNS": "120", "CFL_KEY_PASSPHRASE": "a passphrase typed at the prompt"},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    output: list[str] = []
    failed = 0
    lines = (done.stderr + "\n").splitlines()
    # stdout and stderr are separate streams; the markers are on stderr, so report stderr per block
    # and show stdout whole at the end for a failed run.
    for line in lines:
        if line.startswith(MARK):
            _, number, status = line.split()
            start, body = found[int(number)]
            first = body.strip().splitlines()[0] if body.strip() else ""
            ok = status == "0"
            failed += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {args.guide}:{start} (exit {status}) {first[:90]}")
            if args.show or not ok:
                for shown in output if args.show else output[-15:]:
                    print(f"       | {shown}")
            output = []
        else:
            output.append(line)
    print(f"{len(found)} block(s), {failed} failed; worked in {workdir}")
    if args.workdir is None and not failed:
        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
