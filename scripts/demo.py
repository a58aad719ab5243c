"""`make demo`: the whole library working end to end on local folders, in under two minutes.

It plays every part with the real commands a person would type: the provider sets up a repository
with development keys and imports a sample CPL; three manufacturers make their own keys, are
registered, and deposit signed GBCS images; one deliberately bad deposit is rejected with its code;
the provider publishes, verifies and builds the website; a local static server serves the tree; and a
supplier's client initialises from the root, refreshes, checks a sample estate and downloads what
applies. Then the delivery-outcomes loop (issue 24): two more suppliers (development-only
organisations from demo-data) are registered, record last month's per-device results and submit
signed counts; the provider ingests them, its policy holds the failing image, the website marks it,
and the first supplier's `cfl check` routes around it. Everything lands under demo-out/ (recreated
on each run).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "demo-out"
BIN = Path(sys.executable).parent
STEP = 0


def say(text: str) -> None:
    global STEP
    STEP += 1
    print(f"\n\033[1m[{STEP}] {text}\033[0m", flush=True)


def run(
    *args: str | Path, expect: int = 0, quiet: bool = False
) -> subprocess.CompletedProcess[str]:
    command = [str(a) for a in args]
    shown = " ".join(
        c.replace(str(BIN) + "/", "").replace(str(OUT) + "/", "")
        if c.startswith((str(OUT), str(BIN)))
        else c
        for c in command
    )
    print(f"  $ {shown}", flush=True)
    env = {**os.environ, "COLUMNS": "160"}  # rich tables at a readable width in the transcript
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=OUT, env=env)
    if not quiet:
        for line in (result.stderr + result.stdout).strip().splitlines()[:25]:
            print(f"    {line}")
    if result.returncode != expect:
        print(result.stdout, result.stderr, file=sys.stderr)
        raise SystemExit(f"demo failed: {shown} exited {result.returncode}, expected {expect}")
    return result


# The supplier's home stays bound to the URL it was initialised with, so after the demo a
# `cfl --home demo-out/supplier-home refresh` needs the tree served there again: on 8000 when it is
# free (the port the docs serve on), and the summary prints the command either way.
PREFERRED_PORT = 8000


def free_port() -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", PREFERRED_PORT))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def delivery_outcomes(
    cfl_repo: Path, cfl: Path, repo: Path, public: Path, root: Path, data: Path, home: Path
) -> tuple[str, Path]:
    """Issue 24's loop: two suppliers report per-device results, the provider's policy holds the
    failing image, and the estate's supplier's check routes around it. Returns the held image
    and its site page."""
    samples = json.loads((data / "suppliers" / "suppliers.json").read_text())
    suppliers = samples["suppliers"]
    say(
        "Provider: registers two supplier organisations (development-only certificates from demo-data)"
    )
    for s in suppliers:
        args: list[str | Path] = [cfl_repo, "--repo", repo, "supplier", "add", s["entity_id"]]
        args += ["--name", s["name"], "--cert", data / s["cert"]]
        args += ["--supplier-ca", data / samples["supplier_ca"]]
        for role in s["roles"]:
            args += ["--role", role]
        run(*args)
    run(cfl_repo, "--repo", repo, "publish", "--no-site", quiet=True)

    say(
        f"Suppliers: record last month's ({samples['period']}) delivery results, submit signed counts"
    )
    reports = []
    for s in suppliers:
        # each supplier's own home, on the published folder (file://): no server needed
        own = OUT / f"outcomes-{s['entity_id']}"
        run(cfl, "--home", own, "init", public.as_uri(), "--root", root, quiet=True)
        run(cfl, "--home", own, "refresh", quiet=True)
        run(cfl, "--home", own, "outcomes", "record", data / s["results"])
        report = OUT / "outcome-reports" / f"{s['entity_id']}.{samples['period']}.dsse.json"
        report.parent.mkdir(exist_ok=True)
        run(cfl, "--home", own, "outcomes", "submit", "--key", data / s["key"], "--out", report)
        reports.append(report)

    say("Provider: ingests both reports; the combined figures break the hold policy")
    ingested = run(cfl_repo, "--repo", repo, "outcomes", "ingest", *reports, "--json", quiet=True)
    held = json.loads(ingested.stdout)["held"]
    for line in ingested.stderr.splitlines():
        if line.startswith(("accepted", "held")):
            print(f"    {line}")
    if len(held) != 1:
        raise SystemExit(f"demo failed: expected one image held, found {held}")
    [target] = held
    run(cfl_repo, "--repo", repo, "outcomes", "show", target)
    run(cfl_repo, "--repo", repo, "publish", quiet=True)
    page = public / "site" / "image" / f"{target}.html"
    if "On hold" not in page.read_text():
        raise SystemExit(f"demo failed: {page} does not mark the image On hold")
    print(f"    published; {page.relative_to(OUT)} marks it On hold")

    say(
        "The estate's supplier refreshes: `cfl check` no longer offers the held image, and says why"
    )
    run(cfl, "--home", home, "refresh", quiet=True)
    checked = run(cfl, "--home", home, "check", data / "estate.csv", "--json", quiet=True)
    groups = json.loads(checked.stdout)["groups"]
    holding = [g for g in groups if any(h["target"] == target for h in g["held"])]
    if not holding or any(target in g["path"] for g in holding):
        raise SystemExit(f"demo failed: check does not route around {target}")
    reason = next(h["reason"] for h in holding[0]["held"] if h["target"] == target)
    print(f"    held {target}: {reason}")
    for g in holding:
        # the held image still applies; it is only never a hop, so the path goes around or stops
        now = Path(g["recommended"]).name if g["recommended"] else "nothing (stops before it)"
        print(
            f"    {g['manufacturer_id']}/{g['model_id']} hardware {g['hardware_version']} on "
            f"{g['firmware_version']}, {g['device_count']} devices: recommended now {now}"
        )
    return target, page


def main() -> None:
    started = time.monotonic()
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    env_passphrase = os.environ.get("CFL_KEY_PASSPHRASE")
    cfl_repo, cfl = BIN / "cfl-repo", BIN / "cfl"
    repo, public, data = OUT / "provider", OUT / "provider" / "public", OUT / "data"

    say("Sample data: a CPL, GBCS images from three manufacturers, a supplier estate")
    run(cfl_repo, "demo-data", data)
    declarations = json.loads((data / "declarations.json").read_text())["images"]

    say("Provider: a repository with (loudly labelled) development keys, root 2-of-3")
    run(cfl_repo, "--repo", repo, "init", "--dev-keys")
    run(cfl_repo, "--repo", repo, "cpl", "import", data / "cpl.xlsx")

    manufacturers = sorted({d["manufacturer_id"] for d in declarations})
    say(
        f"Manufacturers {', '.join(manufacturers)} make their own keys; the provider registers the public halves"
    )
    for mfr in manufacturers:
        key = OUT / "manufacturers" / mfr / "signing-key.pem"
        key.parent.mkdir(parents=True)
        run(cfl_repo, "keygen", key, "--no-encrypt")
        run(
            cfl_repo,
            "--repo",
            repo,
            "manufacturer",
            "add",
            mfr,
            "--name",
            f"Manufacturer {mfr}",
            "--key",
            key.with_name("signing-key.pub.pem"),
        )
    say(
        "Provider: a notes-custodian key; manufacturers encrypt release notes to it and to suppliers"
    )
    custodian = OUT / "custodian" / "notes-custodian.pem"
    custodian.parent.mkdir()
    run(cfl_repo, "keygen", custodian, "--type", "ecdsa", "--no-encrypt")
    run(
        cfl_repo,
        "--repo",
        repo,
        "notes",
        "custodian",
        "--public-key",
        custodian.with_name("notes-custodian.pub.pem"),
    )
    run(cfl_repo, "--repo", repo, "publish", "--no-site", quiet=True)
    root = public / "metadata" / "1.root.json"

    inbox = OUT / "inbox"
    inbox.mkdir()
    say("A bad deposit first: a signed image whose bytes are not the ones the CPL records")
    decl = declarations[0]
    tampered = OUT / "tampered.ota"
    image = bytearray((data / decl["image"]).read_bytes())
    image[-1] ^= 0xFF
    tampered.write_bytes(bytes(image))
    bad = inbox / "99-tampered.cflb"
    run(
        cfl_repo,
        "submit",
        tampered,
        "--manufacturer",
        decl["manufacturer_id"],
        "--key",
        OUT / "manufacturers" / decl["manufacturer_id"] / "signing-key.pem",
        "--cpl-entry",
        decl["cpl_entries"][0],
        "--reason",
        "compliance",
        "--from",
        public,
        "--root",
        root,
        "--out",
        bad,
        quiet=True,
    )
    rejected = run(cfl_repo, "--repo", repo, "ingest", bad, "--json", expect=1, quiet=True)
    result = json.loads(rejected.stdout)["results"][0]
    print(f"    rejected with {result['reasons']}: {result['messages'][0][:150]}")

    say("Each manufacturer signs its deposits; the provider's gateway checks them against the CPL")
    for n, decl in enumerate(declarations, start=1):
        mfr = decl["manufacturer_id"]
        bundle = inbox / f"{n:02d}-{Path(decl['image']).stem}.cflb"
        args: list[str | Path] = [
            cfl_repo,
            "submit",
            data / decl["image"],
            "--manufacturer",
            mfr,
            "--key",
            OUT / "manufacturers" / mfr / "signing-key.pem",
            "--reason",
            decl["reason"],
            "--release-notes",
            data / decl["release_notes"],
            "--from",
            public,
            "--root",
            root,
            "--out",
            bundle,
        ]
        for entry in decl["cpl_entries"]:
            args += ["--cpl-entry", entry]
        for advisory in decl["advisories"]:
            args += ["--advisory", advisory]
        run(*args, quiet=True)
        run(cfl_repo, "--repo", repo, "ingest", bundle, quiet=True)
        # Each deposit is one role version; publishing lets the manufacturer build the next on it.
        run(cfl_repo, "--repo", repo, "publish", "--no-site", quiet=True)
    print(f"    {len(declarations)} deposits accepted and published")

    say("Publish, verify independently, build the public website")
    run(cfl_repo, "--repo", repo, "publish")
    run(cfl_repo, "verify", public, "--root", root)
    run(cfl_repo, "--repo", repo, "status")

    say("Supplier: a client that trusts only the root it was given, over HTTP from a local server")
    port = free_port()
    server = subprocess.Popen(
        [str(cfl_repo), "serve", str(public), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                time.sleep(0.05)
        home = OUT / "supplier-home"
        run(cfl, "--home", home, "init", url, "--root", root)
        run(cfl, "--home", home, "refresh")
        run(cfl, "--home", home, "list")
        run(
            cfl,
            "--home",
            home,
            "check",
            data / "estate.csv",
            "--devices-out",
            OUT / "sr11-batches.csv",
        )
        run(
            cfl,
            "--home",
            home,
            "download",
            "--estate",
            data / "estate.csv",
            "--out",
            OUT / "firmware",
        )
        held_target, held_page = delivery_outcomes(cfl_repo, cfl, repo, public, root, data, home)
    finally:
        server.terminate()
        server.wait(timeout=10)

    elapsed = time.monotonic() - started
    print(f"\n\033[1mDone in {elapsed:.0f} s.\033[0m")
    print(f"  published tree : {public}")
    print(f"  website        : {public / 'site' / 'index.html'}")
    print(f"  downloads      : {OUT / 'firmware'} (with manifest.json)")
    print(f"  rejected bundle: {repo / 'rejected'}")
    print(f"  held image page: {held_page}")
    print(
        f"  lift the hold  : cfl-repo --repo {repo.relative_to(ROOT)} release {held_target} "
        "--reason TEXT, then publish"
    )
    shown_bin = cfl_repo.parent.relative_to(ROOT) if cfl_repo.is_relative_to(ROOT) else BIN
    print(
        f"  serve it again : {shown_bin / 'cfl-repo'} serve {public.relative_to(ROOT)} --port {port}"
        f"  then open {url}/site/index.html"
    )
    print(
        f"  supplier home  : {home.relative_to(ROOT)} reads {url}: with the tree served again, "
        f"{shown_bin / 'cfl'} --home {home.relative_to(ROOT)} refresh"
    )
    if env_passphrase:
        print("  (CFL_KEY_PASSPHRASE was set in your environment; the demo's keys are unencrypted)")


if __name__ == "__main__":
    main()
