"""The ledger store on a real (migrated) SQLite control DB: reserve → commit | fail."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import Engine, func, select

from sandbox.audit import store as audit_store
from sandbox.control.db import make_engine, migrate, session_scope
from sandbox.control.models import AuditEntry, Project, User, utcnow
from sandbox.errors import BudgetExceeded, EpsilonTooLarge, InternalError
from sandbox.ledger import store
from sandbox.ledger.models import BudgetSpend, Release
from sandbox.ledger.store import Party
from sandbox.ledger.values import ReleaseStatus, Scope
from sandbox.policy.models import Budgets

BUDGETS = Budgets.model_validate({"per_query_max": "1", "per_user": "2", "per_project": "3", "global": "4"})


def _seed(engine: Engine, users: list[str], projects: list[str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    with session_scope(engine) as session:
        for name in users:
            user = User(username=name, role="researcher")
            session.add(user)
            session.flush()
            ids[name] = user.id
        for name in projects:
            project = Project(name=name, lead_id=ids[users[0]])
            session.add(project)
            session.flush()
            ids[name] = project.id
    return ids


def _make_db(path: Path) -> Engine:
    url = f"sqlite:///{path}"
    migrate(url)
    return make_engine(url)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = _make_db(tmp_path / "control.sqlite")
    yield eng
    eng.dispose()


@pytest.fixture
def parties(engine: Engine) -> dict[str, Party]:
    ids = _seed(engine, ["alice", "bob"], ["fin-lab", "health-lab"])
    return {
        "alice@fin": Party(ids["alice"], "alice", ids["fin-lab"], "fin-lab"),
        "bob@fin": Party(ids["bob"], "bob", ids["fin-lab"], "fin-lab"),
        "alice@health": Party(ids["alice"], "alice", ids["health-lab"], "health-lab"),
    }


def _reserve(engine: Engine, party: Party, charge: str, fp: str = "fp") -> store.Reservation:
    return store.reserve(
        engine,
        party,
        dataset="enterprise_tax",
        budgets=BUDGETS,
        fingerprint=fp,
        epsilon=Decimal(charge),
        charge=Decimal(charge),
    )


def _kinds(engine: Engine) -> list[str]:
    with session_scope(engine) as session:
        return list(session.scalars(select(AuditEntry.kind).order_by(AuditEntry.seq)))


def _check_consistent(engine: Engine) -> None:
    with session_scope(engine) as session:
        assert store.verify(session) == []
        assert audit_store.verify(session).ok


def test_reserve_is_durable_and_commit_stores_the_result(engine: Engine, parties: dict[str, Party]) -> None:
    alice = parties["alice@fin"]
    res = _reserve(engine, alice, "0.5")
    with session_scope(engine) as session:
        row = store.get_release(session, res.release_id)
        assert row is not None and row.status is ReleaseStatus.RESERVED and row.result is None
        assert store.spent(session, "enterprise_tax", alice) == dict.fromkeys(Scope, Decimal("0.5"))
    released = store.commit(engine, res, {"columns": ["n"], "rows": [[3]]})
    assert released.status is ReleaseStatus.COMMITTED
    assert released.result == {"columns": ["n"], "rows": [[3]]}
    assert _kinds(engine) == ["budget.reserved", "query.released"]
    _check_consistent(engine)


def test_scopes_are_shared_as_the_policy_says(engine: Engine, parties: dict[str, Party]) -> None:
    _reserve(engine, parties["alice@fin"], "1")
    _reserve(engine, parties["bob@fin"], "1")
    _reserve(engine, parties["alice@health"], "0.75")
    with session_scope(engine) as session:
        alice_fin = store.status(session, "enterprise_tax", BUDGETS, parties["alice@fin"])
        bob_fin = store.status(session, "enterprise_tax", BUDGETS, parties["bob@fin"])
        other = store.status(session, "other_dataset", BUDGETS, parties["bob@fin"])
    # user budget spans projects; project budget spans users; global spans both
    assert alice_fin.user_remaining == Decimal("0.25")
    assert alice_fin.project_remaining == Decimal(1)
    assert alice_fin.dataset_remaining == Decimal("1.25")
    assert bob_fin.user_remaining == Decimal(1)
    assert other.to_dict() == {"user_remaining": "2", "project_remaining": "3", "dataset_remaining": "4"}
    _check_consistent(engine)


def test_budget_exceeded_writes_nothing(engine: Engine, parties: dict[str, Party]) -> None:
    alice = parties["alice@fin"]
    for _ in range(2):
        _reserve(engine, alice, "1")
    before = _kinds(engine)
    with pytest.raises(BudgetExceeded) as info:
        _reserve(engine, alice, "0.1")
    assert info.value.details["scope"] == "user"
    assert _kinds(engine) == before
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Release)) == 2
    _check_consistent(engine)


def test_epsilon_or_charge_above_per_query_max_is_refused(engine: Engine, parties: dict[str, Party]) -> None:
    with pytest.raises(EpsilonTooLarge):
        _reserve(engine, parties["alice@fin"], "1.01")
    with pytest.raises(EpsilonTooLarge):
        store.reserve(
            engine,
            parties["alice@fin"],
            dataset="enterprise_tax",
            budgets=BUDGETS,
            fingerprint="fp",
            epsilon=Decimal("0.5"),
            charge=Decimal("1.5"),
        )
    assert _kinds(engine) == []


def test_failure_keeps_the_charge_and_logs_details_in_audit_only(
    engine: Engine, parties: dict[str, Party]
) -> None:
    alice = parties["alice@fin"]
    res = _reserve(engine, alice, "0.5")
    store.fail(engine, res, error={"type": "OperationalError", "message": "disk full"})
    with session_scope(engine) as session:
        row = store.get_release(session, res.release_id)
        assert row is not None and row.status is ReleaseStatus.FAILED
        assert store.spent(session, "enterprise_tax", alice)[Scope.USER] == Decimal("0.5")
        entry = session.scalars(select(AuditEntry).where(AuditEntry.kind == "query.failed")).one()
        assert entry.payload()["error"]["message"] == "disk full"
        assert entry.payload()["charge_kept"] == "0.5"
    with pytest.raises(InternalError):
        store.commit(engine, res, {"rows": []})
    _check_consistent(engine)


def test_find_cached_matches_committed_same_project_fingerprint_and_epsilon(
    engine: Engine, parties: dict[str, Party]
) -> None:
    alice = parties["alice@fin"]
    pending = _reserve(engine, alice, "0.5", fp="a")
    with session_scope(engine) as session:
        assert (
            store.find_cached(
                session,
                project_id=alice.project_id,
                dataset="enterprise_tax",
                fingerprint="a",
                epsilon=Decimal("0.5"),
            )
            is None
        )  # reserved is not a release yet
    store.commit(engine, pending, {"rows": [[1]]})
    with session_scope(engine) as session:
        hit = store.find_cached(
            session,
            project_id=alice.project_id,
            dataset="enterprise_tax",
            fingerprint="a",
            epsilon=Decimal("0.50"),
        )
        assert hit is not None and hit.release_id == pending.release_id
        for project_id, fp, eps in (
            (parties["alice@health"].project_id, "a", "0.5"),
            (alice.project_id, "b", "0.5"),
            (alice.project_id, "a", "0.4"),
        ):
            assert (
                store.find_cached(
                    session,
                    project_id=project_id,
                    dataset="enterprise_tax",
                    fingerprint=fp,
                    epsilon=Decimal(eps),
                )
                is None
            )


# --------------------------------------------------------------------------- sweeping abandoned reservations


def _backdate(engine: Engine, release_id: str, minutes: float) -> None:
    """Pretend the reservation was made ``minutes`` ago (as if its process died then)."""
    with session_scope(engine, immediate=True) as session:
        row = session.get(Release, release_id)
        assert row is not None
        row.created_at = row.created_at - timedelta(minutes=minutes)


def _statuses(engine: Engine) -> dict[str, str]:
    with session_scope(engine) as session:
        return dict(session.execute(select(Release.id, Release.status)).all())


def _spend_rows(engine: Engine) -> dict[tuple[str, str, str], str]:
    with session_scope(engine) as session:
        return {(r.dataset, r.scope, r.subject): r.spent for r in session.scalars(select(BudgetSpend))}


def test_sweep_abandons_old_reservations_and_keeps_their_charge(
    engine: Engine, parties: dict[str, Party]
) -> None:
    alice, bob = parties["alice@fin"], parties["bob@fin"]
    old = _reserve(engine, alice, "0.5", fp="old")
    fresh = _reserve(engine, bob, "0.25", fp="fresh")
    done = _reserve(engine, bob, "0.1", fp="done")
    failed = _reserve(engine, alice, "0.2", fp="failed")
    for res in (old, done, failed):
        _backdate(engine, res.release_id, 20)
    store.commit(engine, done, {"rows": []})
    store.fail(engine, failed, error={"type": "test"})
    with session_scope(engine) as session:
        before = {who: store.status(session, "enterprise_tax", BUDGETS, p) for who, p in parties.items()}
    spend_before = _spend_rows(engine)
    kinds_before = _kinds(engine)

    swept = store.sweep_reservations(engine, actor="admin")  # default: older than 15 minutes

    assert [item.release_id for item in swept] == [old.release_id]
    item = swept[0]
    assert (item.user, item.project, item.dataset, item.charge) == (
        "alice",
        "fin-lab",
        "enterprise_tax",
        Decimal("0.5"),
    )
    assert item.request_id == old.request_id
    assert item.to_dict() == {
        "id": old.release_id,
        "request_id": old.request_id,
        "user": "alice",
        "project": "fin-lab",
        "dataset": "enterprise_tax",
        "charge": "0.5",
        "reserved_at": item.reserved_at.isoformat(),
    }
    assert _statuses(engine) == {
        old.release_id: "abandoned",
        fresh.release_id: "reserved",  # younger than the cut-off: maybe still running
        done.release_id: "committed",
        failed.release_id: "failed",
    }
    # the charge is kept: no spend row and no remaining budget changes
    assert _spend_rows(engine) == spend_before
    with session_scope(engine) as session:
        after = {who: store.status(session, "enterprise_tax", BUDGETS, p) for who, p in parties.items()}
        assert after == before
        row = store.get_release(session, old.release_id)
        assert row is not None and row.status is ReleaseStatus.ABANDONED
        assert row.result is None and row.finished_at is not None
        entry = session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
        assert entry is not None and entry.kind == "budget.abandoned" and entry.actor == "admin"
        payload = entry.payload()
        assert payload["release_id"] == old.release_id and payload["request_id"] == old.request_id
        assert (payload["user"], payload["project"], payload["dataset"]) == (
            "alice",
            "fin-lab",
            "enterprise_tax",
        )
        assert payload["charge_kept"] == "0.5" and payload["older_than_seconds"] == 15 * 60
    assert _kinds(engine) == [*kinds_before, "budget.abandoned"]
    _check_consistent(engine)

    # terminal: a late commit or failure of the dead query is refused, and a second sweep finds nothing
    with pytest.raises(InternalError, match="abandoned"):
        store.commit(engine, old, {"rows": []})
    with pytest.raises(InternalError, match="abandoned"):
        store.fail(engine, old, error={"type": "late"})
    assert store.sweep_reservations(engine) == []
    assert _kinds(engine) == [*kinds_before, "budget.abandoned"]


def test_sweep_dry_run_changes_nothing(engine: Engine, parties: dict[str, Party]) -> None:
    first = _reserve(engine, parties["alice@fin"], "0.5", fp="a")
    second = _reserve(engine, parties["alice@health"], "0.25", fp="b")
    _backdate(engine, first.release_id, 90)
    _backdate(engine, second.release_id, 30)
    statuses, kinds = _statuses(engine), _kinds(engine)
    preview = store.sweep_reservations(engine, older_than=timedelta(minutes=20), dry_run=True)
    assert [i.release_id for i in preview] == [first.release_id, second.release_id]  # oldest first
    assert [i.project for i in preview] == ["fin-lab", "health-lab"]
    assert _statuses(engine) == statuses and _kinds(engine) == kinds
    assert store.sweep_reservations(engine, older_than=timedelta(hours=1), dry_run=True) == preview[:1]
    # the real sweep abandons exactly what the dry run listed
    assert store.sweep_reservations(engine, older_than=timedelta(minutes=20)) == preview
    assert set(_statuses(engine).values()) == {"abandoned"}
    assert _kinds(engine) == [*kinds, "budget.abandoned", "budget.abandoned"]
    _check_consistent(engine)


def test_in_flight_lists_reserved_releases_and_cut_off_is_checked(
    engine: Engine, parties: dict[str, Party]
) -> None:
    old = _reserve(engine, parties["alice@fin"], "0.5", fp="a")
    new = _reserve(engine, parties["bob@fin"], "0.25", fp="b")
    done = _reserve(engine, parties["bob@fin"], "0.25", fp="c")
    store.commit(engine, done, {"rows": []})
    _backdate(engine, old.release_id, 60)
    with session_scope(engine) as session:
        assert [i.release_id for i in store.in_flight(session)] == [old.release_id, new.release_id]
        assert [i.release_id for i in store.in_flight(session, older_than=timedelta(minutes=30))] == [
            old.release_id
        ]
    # a cut-off in the future of every reservation, via ``now``
    later = store.sweep_reservations(engine, dry_run=True, now=utcnow() + timedelta(hours=2))
    assert [i.release_id for i in later] == [old.release_id, new.release_id]
    with pytest.raises(ValueError, match="negative"):
        store.sweep_reservations(engine, older_than=timedelta(minutes=-1))


class StoreInterleavings(RuleBasedStateMachine):
    """Any interleaving of reserve / commit / fail on the real store stays within every cap."""

    def __init__(self) -> None:
        super().__init__()
        self._dir = tempfile.TemporaryDirectory()
        self.engine = _make_db(Path(self._dir.name) / "control.sqlite")
        ids = _seed(self.engine, ["u1", "u2"], ["p1", "p2"])
        self.parties = [Party(ids[u], u, ids[p], p) for u in ("u1", "u2") for p in ("p1", "p2")]
        self.open: list[store.Reservation] = []
        self.total = Decimal(0)

    @rule(who=st.integers(0, 3), charge=st.sampled_from(["0.1", "0.25", "0.3", "0.7", "1"]))
    def reserve(self, who: int, charge: str) -> None:
        try:
            self.open.append(_reserve(self.engine, self.parties[who], charge))
            self.total += Decimal(charge)
        except BudgetExceeded:
            pass

    @precondition(lambda self: bool(self.open))
    @rule(data=st.data(), ok=st.booleans())
    def finish(self, data: st.DataObject, ok: bool) -> None:
        res = data.draw(st.sampled_from(self.open))
        self.open.remove(res)
        if ok:
            store.commit(self.engine, res, {"rows": []})
        else:
            store.fail(self.engine, res, error={"type": "test"})

    @precondition(lambda self: bool(self.open))
    @rule()
    def sweep(self) -> None:
        # every open reservation is older than a zero cut-off: all are abandoned, charges kept
        swept = store.sweep_reservations(self.engine, older_than=timedelta(0))
        assert {i.release_id for i in swept} == {r.release_id for r in self.open}
        self.open.clear()

    @invariant()
    def within_caps(self) -> None:
        with session_scope(self.engine) as session:
            for party in self.parties:
                status = store.status(session, "enterprise_tax", BUDGETS, party)
                assert min(status.user_remaining, status.project_remaining, status.dataset_remaining) >= 0
                used = store.spent(session, "enterprise_tax", party)
                assert used[Scope.USER] <= BUDGETS.per_user
                assert used[Scope.PROJECT] <= BUDGETS.per_project
                assert used[Scope.DATASET] == self.total <= BUDGETS.global_cap
            assert store.verify(session) == []

    def teardown(self) -> None:
        self.engine.dispose()
        self._dir.cleanup()


StoreInterleavings.TestCase.settings = settings(max_examples=15, stateful_step_count=25, deadline=None)
test_store_interleavings = StoreInterleavings.TestCase
