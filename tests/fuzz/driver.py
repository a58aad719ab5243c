"""The fuzz loop: inputs from the mutator through the inbox's parser, in a watched child process.

The property, for every input: ``parse_bundle`` (called as the inbox calls it) returns a
``Bundle`` or raises ``BundleError`` whose message is one line that starts with the bundle's name
and stays short. Anything else is a finding:

- ``exception``: any other exception (the parser's contract is that nothing else escapes);
- ``message``: a rejection whose text spans lines, does not name the bundle, or runs past
  `MAX_MESSAGE` characters (it becomes the report the manufacturer reads);
- ``result``: the parser returned something that is not a ``Bundle``;
- ``memory``: ``MemoryError`` under the child's address-space limit;
- ``hang``: one input used more than ``timeout`` seconds of CPU (or 30 times that in wall time:
  CPU time, because at nice 19 on a shared machine the wall clock measures the neighbours);
- ``died``: the child ended without finishing, by a signal (the kernel's OOM killer, a crash in C).

The inputs run in a forked child so that a hang in C code or a crash cannot take the run with it:
the parent watches the child's CPU time per input, kills it on a hang, saves the finding and starts
a new child at the next input. Findings are saved as the input's bytes plus a JSON record (seed,
input number, what the mutator did, the traceback), at most `KEEP_PER_SIGNATURE` inputs for each
distinct failure, so a bug that every tenth input hits does not fill the disk.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from metadata_templates.atomic import atomic_write_bytes
from repo_tool.intake.bundle import DEFAULT_ROLE_SIZE_CAP, Bundle, BundleError, parse_bundle
from tests.fuzz.bundle_mutator import Mutator

SOURCE = "fuzz.cflb"
MAX_MESSAGE = 2000
KEEP_PER_SIGNATURE = 3
# Shared counters between the child and the parent (one int64 each).
_CURRENT, _DONE, _PARSED, _REJECTED, _SLOWEST_NS, _SLOWEST_INDEX = range(6)
_TICKS = os.sysconf("SC_CLK_TCK")

Parse = Callable[[bytes], object]


def inbox_parse(data: bytes) -> object:
    """What `repo_tool.intake.inbox.read_bundle_file` does with the bytes it read."""
    return parse_bundle(data, source=SOURCE, role_size_cap=DEFAULT_ROLE_SIZE_CAP)


@dataclass(frozen=True)
class Finding:
    index: int
    kind: str
    detail: str
    signature: str


@dataclass
class Outcome:
    """What a run did: counts, findings, and what it cost."""

    seed: int
    start: int
    requested: int
    executions: int = 0
    parsed: int = 0
    rejected: int = 0
    findings: list[Finding] = field(default_factory=list)
    signatures: dict[str, int] = field(default_factory=dict)
    saved: list[str] = field(default_factory=list)
    restarts: int = 0
    slowest_seconds: float = 0.0
    slowest_index: int = -1
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return self.executions == self.requested

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "start": self.start,
            "requested": self.requested,
            "executions": self.executions,
            "complete": self.complete,
            "parsed": self.parsed,
            "rejected": self.rejected,
            "findings": len(self.findings),
            "signatures": [
                {"signature": s, "count": n} for s, n in sorted(self.signatures.items())
            ],
            "saved": self.saved,
            "child_restarts": self.restarts,
            "slowest_input": {
                "index": self.slowest_index,
                "cpu_seconds": round(self.slowest_seconds, 4),
            },
            "seconds": round(self.seconds, 1),
            "executions_per_second": round(self.executions / self.seconds, 1)
            if self.seconds
            else 0,
        }


def judge(parse: Parse, data: bytes) -> tuple[str, str, str] | bool:
    """``True`` parsed, ``False`` rejected as documented, else ``(kind, detail, signature)``."""
    try:
        result = parse(data)
    except BundleError as e:
        message = str(e)
        if (
            not message.startswith(f"{SOURCE}: ")
            or "\n" in message
            or "\r" in message
            or len(message) > MAX_MESSAGE
        ):
            return "message", message[:10_000], f"message: {_message_shape(message)}"
        return False
    except MemoryError:
        return "memory", traceback.format_exc(), "memory: MemoryError"
    except BaseException as e:  # every other exception is what the fuzzer hunts
        if isinstance(e, KeyboardInterrupt):
            raise
        return "exception", traceback.format_exc(), f"exception: {_where(e)}"
    if not isinstance(result, Bundle):
        return "result", repr(result)[:1000], f"result: {type(result).__name__}"
    return True


def _message_shape(message: str) -> str:
    if "\n" in message or "\r" in message:
        return "spans lines"
    if len(message) > MAX_MESSAGE:
        return f"longer than {MAX_MESSAGE}"
    return "does not name the bundle"


def _where(e: BaseException) -> str:
    """The exception's type and the innermost frame of the project (or the innermost at all)."""
    frames = traceback.extract_tb(e.__traceback__)
    ours = [
        f for f in frames if "/repo_tool/" in f.filename or "/metadata_templates/" in f.filename
    ]
    frame = (ours or frames or [None])[-1]
    place = f"{Path(frame.filename).name}:{frame.lineno}" if frame else "?"
    return f"{type(e).__name__} at {place}"


def _child(
    corpus: dict[str, bytes],
    seed: int,
    start: int,
    stop: int,
    parse: Parse,
    counters: Any,
    conn: Connection,
    memory_limit: int,
) -> None:
    if memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    mutator = Mutator(corpus)
    # CPU time, not wall time: at nice 19 on a shared machine a 0.1 ms input measured 0.8 s by
    # the wall clock while the neighbours ran.
    clock = time.process_time_ns
    for index in range(start, stop):
        counters[_CURRENT] = index
        data = mutator.mutant(seed, index).data
        began = clock()
        verdict = judge(parse, data)
        took = clock() - began
        if verdict is True:
            counters[_PARSED] += 1
        elif verdict is False:
            counters[_REJECTED] += 1
        else:
            conn.send((index, *verdict))
        if took > counters[_SLOWEST_NS]:
            counters[_SLOWEST_NS] = took
            counters[_SLOWEST_INDEX] = index
        counters[_DONE] += 1
    conn.send(None)
    conn.close()


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process (Linux /proc), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


@dataclass
class Driver:
    """A run over inputs ``start .. start + executions - 1`` of ``seed``.

    ``parse`` is what each input is fed to (the inbox's parser unless a test plants a bug);
    ``findings_dir`` is where findings are saved (the corpus beside them, so they replay);
    ``progress`` is called about every ``progress_every`` inputs with the outcome so far.
    """

    corpus: dict[str, bytes]
    seed: int
    executions: int
    findings_dir: Path
    start: int = 0
    parse: Parse = inbox_parse
    timeout: float = 1.0
    memory_mb: int = 1024
    progress_every: int = 100_000
    progress: Callable[[Outcome], None] = lambda _outcome: None
    clock: Callable[[], float] = time.monotonic
    poll: float = 0.1

    def run(self) -> Outcome:
        outcome = Outcome(self.seed, self.start, self.executions)
        self._mutator = Mutator(self.corpus)
        context = multiprocessing.get_context("fork")  # the child inherits parse and the corpus
        began = self.clock()
        stop = self.start + self.executions
        next_index = self.start
        reported = 0
        while next_index < stop:
            counters = context.RawArray("q", 6)
            counters[_CURRENT] = next_index
            receive, send = context.Pipe(duplex=False)
            child = context.Process(
                target=_child,
                args=(self.corpus, self.seed, next_index, stop, self.parse, counters, send,
                      self._memory_limit()),
                daemon=True,
            )  # fmt: skip
            child.start()
            send.close()
            base = (outcome.executions, outcome.parsed, outcome.rejected)
            watched, cpu_at, wall_at = -1, 0.0, self.clock()
            finished = hung = False
            while True:
                while receive.poll(self.poll if not finished else 0):
                    try:
                        message = receive.recv()
                    except EOFError:
                        break
                    if message is None:
                        finished = True
                        continue
                    self._found(outcome, *message)
                current = counters[_CURRENT]
                outcome.executions = base[0] + counters[_DONE]
                outcome.parsed = base[1] + counters[_PARSED]
                outcome.rejected = base[2] + counters[_REJECTED]
                outcome.seconds = self.clock() - began
                if counters[_SLOWEST_NS] / 1e9 > outcome.slowest_seconds:
                    outcome.slowest_seconds = counters[_SLOWEST_NS] / 1e9
                    outcome.slowest_index = counters[_SLOWEST_INDEX]
                if outcome.executions - reported >= self.progress_every:
                    reported = outcome.executions - outcome.executions % self.progress_every
                    self.progress(outcome)
                if finished or not child.is_alive():
                    break
                cpu = _cpu_seconds(child.pid or 0)
                if current != watched:
                    watched, cpu_at, wall_at = current, cpu, self.clock()
                elif cpu - cpu_at > self.timeout or self.clock() - wall_at > 30 * self.timeout:
                    child.kill()
                    child.join()
                    hung = True
                    self._found(
                        outcome,
                        current,
                        "hang",
                        f"more than {self.timeout} s of CPU ({cpu - cpu_at:.2f} s) or "
                        f"{30 * self.timeout} s of wall time on one input",
                        "hang",
                    )
                    break
            child.join()
            receive.close()
            if finished:
                break
            current = counters[_CURRENT]
            if not hung:
                self._found(outcome, current, "died", f"exit code {child.exitcode}", "died")
            # the input that hung or killed the child counts as executed; go on after it
            outcome.executions = base[0] + counters[_DONE] + 1
            outcome.restarts += 1
            next_index = current + 1
        outcome.seconds = self.clock() - began
        return outcome

    def _memory_limit(self) -> int:
        """The child's address-space cap: what the process maps now plus ``memory_mb``."""
        if not self.memory_mb:
            return 0
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024 + self.memory_mb * 1024 * 1024
        return 0

    def _found(self, outcome: Outcome, index: int, kind: str, detail: str, signature: str) -> None:
        finding = Finding(index, kind, detail, signature)
        outcome.findings.append(finding)
        seen = outcome.signatures.get(signature, 0)
        outcome.signatures[signature] = seen + 1
        if seen >= KEEP_PER_SIGNATURE:
            return
        mutant = self._mutator.mutant(self.seed, index)
        folder = self.findings_dir
        if not (folder / "corpus").exists():
            from tests.fuzz.bundle_corpus import save_corpus

            save_corpus(self.corpus, folder / "corpus")
        stem = f"seed{self.seed}-{index}-{kind}"
        atomic_write_bytes(folder / f"{stem}.cflb", mutant.data)
        record = {
            "seed": self.seed,
            "index": index,
            "kind": kind,
            "signature": signature,
            "from": mutant.seed,
            "steps": list(mutant.steps),
            "detail": detail,
            "replay": f"python -m tests.fuzz.run_bundle --corpus {folder / 'corpus'} "
            f"--seed {self.seed} --replay {index}",
        }
        atomic_write_bytes(folder / f"{stem}.json", (json.dumps(record, indent=2) + "\n").encode())
        outcome.saved.append(f"{stem}.cflb")
