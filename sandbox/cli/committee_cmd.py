"""The expert committee's workbench from a terminal (SR-37).

    sandbox committee queues --as USER
    sandbox committee list --as USER [--kind K] [--status S]
    sandbox committee show ID --as USER
    sandbox committee raise --as USER --kind K --title T --description D [--dataset D] [--application ID]
    sandbox committee opinion ID --as EXPERT --opinion O --members a,b --reason R [--conditions C] [--date D]
    sandbox committee withdraw ID --as USER --reason R

The same service functions as the pages (``sandbox.governance.committee``), as the account
named by ``--as``. ``--json`` prints the records; errors print ``{"error": {"code", "message",
"hint"}}`` (with ``--json``) and exit 2.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from sandbox.cli.governance_cmd import AsOpt, JsonOpt, _call, _each, _show
from sandbox.governance.committee_rules import ItemKind, ItemStatus, Opinion

committee_app = typer.Typer(
    help="Expert committee workbench (SR-37): queues, items, opinions.", no_args_is_help=True
)

ReasonOpt = Annotated[
    str, typer.Option("--reason", help="Why (kept with the item; the audit chain pins its SHA-256).")
]
_KINDS = ", ".join(k.value for k in ItemKind)
_OPINIONS = ", ".join(o.value for o in Opinion)
_STATUSES = ", ".join(s.value for s in ItemStatus)


def _item_lines(record: Any) -> list[str]:
    subject = ", ".join(
        part
        for part in (
            f"dataset {record.dataset}" if record.dataset else "",
            f"application {record.application_id}" if record.application_id else "",
        )
        if part
    )
    out = [
        f"item {record.id}  {record.kind}  {record.status}  {subject}",
        f"  {record.title}",
        f"  raised by {record.raised_by}{' (automatic)' if record.automatic else ''} on "
        f"{record.raised_at:%Y-%m-%d}",
    ]
    if record.opinion is not None:
        op = record.opinion
        out.append(
            f"  opinion {op.opinion} on {op.decided_on.isoformat()} by {', '.join(op.members)} "
            f"(recorded by {op.recorded_by}): {op.reason}"
        )
        if op.conditions:
            out.append(f"  conditions: {op.conditions}")
    if record.withdrawn_by:
        out.append(f"  withdrawn by {record.withdrawn_by}: {record.withdrawn_reason}")
    return out


def _full_lines(record: Any) -> list[str]:
    out = _item_lines(record)
    out.append(f"  description: {record.description}")
    if record.application:
        a = record.application
        out.append(f"  application {a['id']} ({a['status']}) project {a['project']}: {a['scenario']}")
    for entry in record.history:
        out.append(f"  audit #{entry['seq']} {entry['kind']} by {entry['actor']} at {entry['ts']}")
    return out


@committee_app.command("queues")
def committee_queues(as_user: AsOpt, as_json: JsonOpt = False) -> None:
    """The four queues with the counts of the items you may see."""
    from sandbox.governance import committee

    records = _call(as_json, lambda ctx: committee.queues(ctx, user=as_user))
    _show(
        as_json,
        records,
        _each(
            lambda q: [
                f"{q.kind:<26} open {q.open:>3}  opinions {q.opinion_recorded:>3}  withdrawn {q.withdrawn:>3}"
                f"  {q.title_zh} / {q.title_en}"
            ]
        ),
    )


@committee_app.command("list")
def committee_list(
    as_user: AsOpt,
    kind: Annotated[str | None, typer.Option("--kind", help=f"One queue: {_KINDS}.")] = None,
    status: Annotated[str | None, typer.Option("--status", help=f"One status: {_STATUSES}.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Committee items you may see, newest first."""
    from sandbox.governance import committee

    records = _call(as_json, lambda ctx: committee.list_items(ctx, user=as_user, kind=kind, status=status))
    _show(as_json, records, _each(_item_lines))


@committee_app.command("show")
def committee_show(
    item_id: Annotated[int, typer.Argument(help="Committee item id.")],
    as_user: AsOpt,
    as_json: JsonOpt = False,
) -> None:
    """One item with its case file: description, application, opinion, audit entries."""
    from sandbox.governance import committee

    record = _call(as_json, lambda ctx: committee.show(ctx, user=as_user, item_id=item_id))
    _show(as_json, record, _full_lines)


@committee_app.command("raise")
def committee_raise(
    as_user: AsOpt,
    kind: Annotated[str, typer.Option("--kind", help=f"The queue: {_KINDS}.")],
    title: Annotated[str, typer.Option("--title", help="A short title.")],
    description: Annotated[str, typer.Option("--description", help="The matter and its grounds.")],
    dataset: Annotated[str | None, typer.Option("--dataset", help="Dataset the item is about.")] = None,
    application: Annotated[
        int | None, typer.Option("--application", help="Application the item is about.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Put a matter to the committee (stewards for their data, the operator, experts; see docs)."""
    from sandbox.governance import committee

    record = _call(
        as_json,
        lambda ctx: committee.raise_item(
            ctx,
            actor=as_user,
            kind=kind,
            title=title,
            description=description,
            dataset=dataset,
            application_id=application,
        ),
    )
    _show(as_json, record, _item_lines)


@committee_app.command("opinion")
def committee_opinion(
    item_id: Annotated[int, typer.Argument(help="Committee item id.")],
    as_user: AsOpt,
    opinion: Annotated[str, typer.Option("--opinion", help=f"The opinion: {_OPINIONS}.")],
    members: Annotated[
        str, typer.Option("--members", help="Comma-separated experts who took part (you among them).")
    ],
    reason: ReasonOpt,
    conditions: Annotated[
        str | None, typer.Option("--conditions", help="The conditions (approve_with_conditions only).")
    ] = None,
    decided_on: Annotated[
        str | None, typer.Option("--date", help="Date the committee deliberated, YYYY-MM-DD (default today).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record the committee's opinion on an open item (a member of the committee)."""
    from sandbox.governance import committee

    record = _call(
        as_json,
        lambda ctx: committee.record_opinion(
            ctx,
            actor=as_user,
            item_id=item_id,
            opinion=opinion,
            members=members,
            reason=reason,
            conditions=conditions,
            decided_on=decided_on,
        ),
    )
    _show(as_json, record, _item_lines)


@committee_app.command("withdraw")
def committee_withdraw(
    item_id: Annotated[int, typer.Argument(help="Committee item id.")],
    as_user: AsOpt,
    reason: ReasonOpt,
    as_json: JsonOpt = False,
) -> None:
    """Withdraw an open item (whoever raised it, or the operator)."""
    from sandbox.governance import committee

    record = _call(
        as_json, lambda ctx: committee.withdraw(ctx, actor=as_user, item_id=item_id, reason=reason)
    )
    _show(as_json, record, _item_lines)


def register(app: typer.Typer) -> None:
    app.add_typer(committee_app, name="committee")


__all__ = ["register"]
