"""Audit event kinds of the governance area (SR-28), registered at import.

The foundation registered ``application.submitted``, ``application.decided``,
``agreement.signed``, ``consent.granted``, ``consent.revoked``, ``consent.used`` and
``violation.recorded``; the kinds below complete the flows. Payloads carry
pseudonymous ids (usernames, project names, dataset ids, record ids), never personal data.
"""

from __future__ import annotations

from sandbox.audit.events import register_kind

_KINDS: list[tuple[str, str, tuple[str, ...]]] = [
    ("agreement.withdrawn", "Data-use agreement withdrawn; its grants revoked.", ("agreement_id",)),
    ("agreement.superseded", "Data-use agreement replaced by a renewal.", ("agreement_id",)),
    ("lookup.refused", "Record look-up refused (no or expired authorisation, wrong bank).", ("dataset",)),
    ("violation.reported", "Suspected violation reported (举报).", ("violation_id",)),
    ("violation.dismissed", "Violation report dismissed with reasons.", ("violation_id",)),
    ("violation.appealed", "Appeal against a confirmed violation filed.", ("violation_id",)),
    ("violation.appeal_decided", "Appeal decided: sanction upheld or access reinstated.", ("violation_id",)),
    ("sanction.applied", "Effects of a confirmed violation outside the control DB.", ("violation_id",)),
    ("budget.frozen", "A user's privacy budget frozen by a sanction.", ("user", "violation_id")),
    ("budget.unfrozen", "A frozen budget released on reinstatement.", ("user", "violation_id")),
    ("disclosure.published", "Entry published on the public disclosure list.", ("disclosure_id",)),
    ("disclosure.updated", "Disclosure entry annotated (appeal outcome).", ("disclosure_id",)),
    ("demand.filed", "Demand request for data not yet open (开放需求).", ("request_id",)),
    ("demand.updated", "Demand request answered, opened or refused.", ("request_id", "status")),
    ("correction.filed", "Data-correction report (数据纠错).", ("request_id", "dataset")),
    ("correction.updated", "Data-correction report handled.", ("request_id", "status")),
    (
        "objection.filed",
        "Objection or complaint (权益保护); texts as SHA-256 only.",
        ("request_id", "dataset", "description_sha256"),
    ),
    (
        "objection.updated",
        "Objection acknowledged or decided (outcome, reason digest).",
        ("request_id", "status"),
    ),
    (
        "usage_report.filed",
        "Usage / outcome report of a project (数据利用情况报告).",
        ("report_id", "project"),
    ),
    ("audit.extract_exported", "Extract of the whole audit chain taken (gateway).", ("head_seq",)),
]

for _name, _description, _required in _KINDS:
    register_kind(_name, 1, _description, required=_required)

KINDS = tuple(name for name, _, _ in _KINDS)

__all__ = ["KINDS"]
