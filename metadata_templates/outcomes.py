"""Delivery outcomes (issue 24): the supplier's signed report and the provider's published figures.

Both sides read these shapes, so they live in the contract:

- ``OUTCOME_CODES``: the closed list of per-device outcomes a supplier records, each mapped to what
  the DCC tells it (a DUIS response or alert), and whether it counts against the firmware;
- ``OutcomeReport``: what leaves a supplier, one per supplier per period. Counts per image and
  outcome only: no device ID is in it, by construction (there is no field to put one in). It
  travels as a DSSE envelope signed with the supplier's organisation key, the P-256 key of the
  certificate it registered, so the provider checks it against the registry and nothing else;
- ``OutcomesDocument``: ``cfl/outcomes.json``, signed by the online ``cfl-provider`` role: per
  image, devices attempted, counts by outcome, failure rate and how many suppliers reported, plus
  the append-only list of holds and releases that the policy and the provider recorded;
- ``OutcomePolicy`` and ``due_holds``: the one rule that puts failing firmware on hold.

Why deliveries that never arrived do not count against an image: ``not-retrieved`` and ``timeout``
say the device did not get the image (communications, a DCC backlog), not that the image failed.
A regional outage must not hold good firmware for every supplier, so the failure rate is failures
over devices the image reached (``delivered``), and the minimum device count applies to those too.
"""

from __future__ import annotations

# The contract lives in two modules (each under the house limit of 600 lines): the report side and
# the provider's document with its hold rule. Both sides import it from here.
from metadata_templates.naming import OUTCOMES_TARGET_PATH
from metadata_templates.outcome_document import (
    ACTION_HOLD,
    ACTION_RELEASE,
    BY_POLICY,
    BY_PROVIDER,
    DEFAULT_OUTCOME_POLICY,
    HoldEvent,
    ImageOutcomes,
    OutcomePolicy,
    OutcomesDocument,
    combine,
    due_holds,
    hold_reason,
    new_event,
)
from metadata_templates.outcome_report import (
    FAILURE,
    MAX_DEVICE_COUNT,
    MAX_REPORT_BYTES,
    MAX_REPORT_IMAGES,
    OUTCOME_CODES,
    REPORT_FILE_SUFFIX,
    REPORT_PAYLOAD_TYPE,
    REPORT_TYPE,
    SUCCESS,
    UNDELIVERED,
    UPLOAD_PREFIX,
    Figures,
    OutcomeCode,
    OutcomeReport,
    ReportImage,
    checked_counts,
    open_report,
    organisation_key,
    period_bounds,
    periods_overlap,
    previous_month,
    report_file_name,
    report_payload_unverified,
    sign_report,
    upload_path,
)

__all__ = [
    "ACTION_HOLD",
    "ACTION_RELEASE",
    "BY_POLICY",
    "BY_PROVIDER",
    "DEFAULT_OUTCOME_POLICY",
    "FAILURE",
    "MAX_DEVICE_COUNT",
    "MAX_REPORT_BYTES",
    "MAX_REPORT_IMAGES",
    "OUTCOMES_TARGET_PATH",
    "OUTCOME_CODES",
    "REPORT_FILE_SUFFIX",
    "REPORT_PAYLOAD_TYPE",
    "REPORT_TYPE",
    "SUCCESS",
    "UNDELIVERED",
    "UPLOAD_PREFIX",
    "Figures",
    "HoldEvent",
    "ImageOutcomes",
    "OutcomeCode",
    "OutcomePolicy",
    "OutcomeReport",
    "OutcomesDocument",
    "ReportImage",
    "checked_counts",
    "combine",
    "due_holds",
    "hold_reason",
    "new_event",
    "open_report",
    "organisation_key",
    "period_bounds",
    "periods_overlap",
    "previous_month",
    "report_file_name",
    "report_payload_unverified",
    "sign_report",
    "upload_path",
]
