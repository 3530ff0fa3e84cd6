"""Export state machine: one table, check_can_*/can_* pair, doc kept in sync."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.errors import InvalidTransition
from sandbox.export import states
from sandbox.export.states import ExportActor, ExportStatus, can_transition, check_can_transition

DOC = Path(__file__).resolve().parents[2] / "docs" / "export-states.md"


def test_status_values_are_the_documented_strings() -> None:
    assert [s.value for s in ExportStatus] == [
        "submitted",
        "checked",
        "under_review",
        "approved",
        "rejected",
        "released",
        "withdrawn",
    ]


@pytest.mark.parametrize("transition", states.TRANSITIONS, ids=lambda t: f"{t.source}->{t.target}")
def test_every_listed_transition_is_allowed_for_its_actors(transition: states.Transition) -> None:
    for actor in ExportActor:
        assert can_transition(transition.source, transition.target, actor) == (actor in transition.actors)


def test_unlisted_transitions_are_refused_for_everyone() -> None:
    listed = {(t.source, t.target) for t in states.TRANSITIONS}
    for source in ExportStatus:
        for target in ExportStatus:
            if (source, target) in listed:
                continue
            for actor in [*ExportActor, None]:
                assert not can_transition(source, target, actor)


def test_final_states_have_no_way_out_and_say_so() -> None:
    for final in states.FINAL_STATES:
        assert states.allowed_targets(final) == []
    with pytest.raises(InvalidTransition, match="released, which is final") as info:
        check_can_transition("released", "approved", "reviewer")
    assert info.value.hint == "Submit a new export request instead."


def test_requester_cannot_approve_their_own_request() -> None:
    with pytest.raises(InvalidTransition, match="Only the reviewer may move") as info:
        check_can_transition(ExportStatus.UNDER_REVIEW, ExportStatus.APPROVED, ExportActor.REQUESTER)
    assert "you are acting as requester" in info.value.message
    assert "nobody reviews their own request" in info.value.hint


def test_auditor_has_no_role_and_cannot_move_anything() -> None:
    with pytest.raises(InvalidTransition, match="no role on this request"):
        check_can_transition("under_review", "rejected", None)


def test_skipping_review_is_refused_with_the_allowed_targets() -> None:
    with pytest.raises(InvalidTransition, match="cannot go from submitted to approved") as info:
        check_can_transition("submitted", "approved", "system")
    assert "checked, rejected, withdrawn" in info.value.hint
    assert info.value.code == "invalid_transition"


def test_check_can_transition_returns_the_transition() -> None:
    t = check_can_transition("checked", "under_review", "system")
    assert t.meaning.startswith("a steward must review")


def test_mermaid_lists_every_transition() -> None:
    text = states.mermaid()
    assert text.startswith("stateDiagram-v2\n")
    for t in states.TRANSITIONS:
        assert f"{t.source.value} --> {t.target.value} :" in text


def test_doc_is_in_sync_with_the_table() -> None:
    assert DOC.read_text(encoding="utf-8") == states.render_doc(), (
        "docs/export-states.md is stale; regenerate it with states.render_doc()"
    )


def test_contributing_draws_the_state_machine_from_the_table() -> None:
    contributing = (Path(__file__).resolve().parents[2] / "CONTRIBUTING.md").read_text(encoding="utf-8")
    block = contributing.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert block.strip() == states.mermaid().strip(), (
        "CONTRIBUTING.md's state diagram is stale; paste the output of sandbox.export.states.mermaid()"
    )
