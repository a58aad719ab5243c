"""`cfl-repo release` and `cfl-repo hold`: the provider's decisions on pilot images (issue 22).

Registered on the root group by repo_tool/cli/main.py; parse, call `repo_tool.ops.release` or
`repo_tool.ops.hold`, render.
"""

from __future__ import annotations

import click

from metadata_templates.outcomes import ACTION_HOLD, ACTION_RELEASE
from repo_tool.cli.console import emit_json as _emit_json
from repo_tool.cli.console import err as _err
from repo_tool.cli.console import open_repo as _open_repo
from repo_tool.cli.console import utc_now

_now = utc_now

_AFTER = (
    "run `cfl-repo publish`, then regenerate the host configuration (`cfl-repo host nginx ...`) "
    "and `nginx -s reload`"
)


@click.command()
@click.argument("target")
@click.option(
    "--reason", help="Why (recorded, published and logged; default: 'released by the provider')."
)
@click.option("--json", "as_json", is_flag=True, help="Print the recorded release on stdout.")
@click.pass_context
def release(ctx: click.Context, target: str, reason: str | None, as_json: bool) -> None:
    """Release the pilot image TARGET to every entitled supplier now: before its release date, or
    after a hold. Recorded once in cfl/releases.json (signed by cfl-provider) and the transparency
    log; running it again with the same reason changes nothing.

    \b
      cfl-repo --repo R release 121D/ESME-0001-00000003-3f2a9c1d0b7e4a51.ota \\
          --reason "pilot at 00000000000000A1 completed"
      cfl-repo --repo R publish
      cfl-repo --repo R host nginx ... --out /etc/cfl/nginx.conf && nginx -s reload ...
    On its release date `cfl-repo refresh` records the release by itself. See docs/operator.md,
    "Pilots: release and hold"."""
    from repo_tool.ops import outcomes as outcome_ops
    from repo_tool.ops.release import release as do_release

    repo = _open_repo(ctx)
    with repo.locked():
        if outcome_ops.is_held(repo, target):
            # An outcome hold (issue 24): lifting it answers the evidence seen so far.
            lifted, _ = outcome_ops.change_hold(repo, target, ACTION_RELEASE, reason, now=_now())
            if as_json:
                _emit_json({**lifted.to_dict(), "recorded": True})  # type: ignore[attr-defined]
            _err(
                f"lifted the outcome hold of {target}; only new failures bring it back on hold. "
                "Run `cfl-repo publish`"
            )
            return
        event, recorded = do_release(repo, target, reason, now=_now())
    if as_json:
        _emit_json({**event.to_dict(), "recorded": recorded})
    if recorded:
        _err(f"released {event.target} at {event.at}; {_AFTER}")
    else:
        _err(f"{event.target} was released already at {event.at}; nothing changed")


@click.command()
@click.argument("target")
@click.option("--reason", required=True, help="Why (recorded, published and logged).")
@click.option("--json", "as_json", is_flag=True, help="Print the recorded hold on stdout.")
@click.pass_context
def hold(ctx: click.Context, target: str, reason: str, as_json: bool) -> None:
    """Hold the pilot image TARGET: it stays with its pilot suppliers past its release date, until
    `cfl-repo release TARGET`. Recorded once in cfl/releases.json (signed by cfl-provider) and the
    transparency log. A released image is held from recommendation instead (cfl/outcomes.json, as
    failing delivery outcomes would hold it; docs/outcomes.md), until `cfl-repo release TARGET
    --reason TEXT`.

    \b
      cfl-repo --repo R hold 121D/ESME-0001-00000003-3f2a9c1d0b7e4a51.ota \\
          --reason "pilot found a metering fault; waiting for a fixed build"
      cfl-repo --repo R publish
    See docs/operator.md, "Pilots: release and hold"."""
    from repo_tool.ops import outcomes as outcome_ops
    from repo_tool.ops.hold import hold as do_hold
    from repo_tool.state import pilots

    repo = _open_repo(ctx)
    with repo.locked():
        try:
            pilot = pilots.pilot_image(repo, target, _now())
        except KeyError:
            pilot = None  # not an image: the pilot hold names the error
            in_pilot = True
        else:
            in_pilot = pilot is not None and not pilot.state.released
        if not in_pilot:
            # A released image: held from recommendation, as failing outcomes would (issue 24).
            held, recorded = outcome_ops.change_hold(repo, target, ACTION_HOLD, reason, now=_now())
            if as_json:
                _emit_json({**held.to_dict(), "recorded": recorded})  # type: ignore[attr-defined]
            _err(
                f"held {target}: no client recommends it until `cfl-repo release {target} "
                "--reason TEXT`; run `cfl-repo publish`"
                if recorded
                else f"{target} is on hold already; nothing changed"
            )
            return
        event, recorded = do_hold(repo, target, reason, now=_now())
    if as_json:
        _emit_json({**event.to_dict(), "recorded": recorded})
    if recorded:
        _err(f"held {event.target} at {event.at}; run `cfl-repo publish`")
    else:
        _err(f"{event.target} was held already at {event.at}; nothing changed")
