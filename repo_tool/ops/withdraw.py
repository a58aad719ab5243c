"""Withdraw an image: a recorded event and the provider target ``cfl/withdrawals.json``; the blob and
the manufacturer's signed metadata stay (nothing lodged is removed)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from tuf.api.metadata import TargetFile, Targets

from metadata_templates import naming
from metadata_templates.custom import format_timestamp
from metadata_templates.errors import ConfigurationError, RejectedInputError
from metadata_templates.withdrawals import Withdrawal
from repo_tool.state.bins import image_role
from repo_tool.state.repository import Repository


def withdraw(repo: Repository, target: str, reason: str, *, now: datetime) -> Withdrawal:
    """Record a withdrawal: the target leaves clients' recommendations; its blob stays.

    Withdrawing again with the same reason returns the recorded withdrawal and changes nothing,
    so a command repeated after a crash succeeds.

    Raises:
        RejectedInputError: unknown target, or already withdrawn.
        ConfigurationError: no reason.
    """
    if not reason.strip():
        raise ConfigurationError(
            "--reason: found an empty reason, expected why the image is withdrawn"
        )
    # The manufacturer role, or the hash bin the image's path goes to (repo_tool/state/bins.py).
    role_name = image_role(repo, target) if naming.is_image_target_path(target) else None
    if role_name is None or target not in repo.role(role_name).signed.targets:
        raise RejectedInputError(
            f"TARGET: found {target!r}, expected an image target in the library"
        )
    current = repo.withdrawals()
    earlier = current.by_target().get(target)
    if earlier is not None:
        if earlier.reason == reason.strip():
            # The same withdrawal again (a re-run after a crash, a retried script): done.
            return earlier
        raise RejectedInputError(
            f"TARGET: {target} was withdrawn already ({earlier.withdrawn}, reason "
            f"{earlier.reason!r}); a withdrawal is recorded once and never edited"
        )
    sha = repo.role(role_name).signed.targets[target].hashes["sha256"]
    withdrawal = Withdrawal(
        target=target, sha256=sha, withdrawn=format_timestamp(now), reason=reason.strip()
    )
    data = current.with_added(withdrawal).to_bytes()
    doc_sha = repo.blobs.put(data)

    def change(targets: Targets) -> None:
        targets.targets[naming.WITHDRAWALS_TARGET_PATH] = TargetFile(
            len(data), {"sha256": doc_sha}, naming.WITHDRAWALS_TARGET_PATH
        )

    head = repo.stage_provider_change(change, now)
    repo.commit(
        replace(head, withdrawals_sha256=doc_sha),
        event={"event": "withdraw", "at": withdrawal.withdrawn, **withdrawal.to_dict()},
    )
    return withdrawal
