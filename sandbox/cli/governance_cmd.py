"""Governance from a terminal (operators): applications, agreements, consents, look-ups, violations.

    sandbox application conditions | submit | decide ID | show [ID]
    sandbox agreement list | show ID | withdraw ID
    sandbox consent grant --enterprise USCC --bank ORG --datasets a,b --days N | revoke ID | list | log
    sandbox consent demo-enterprise
    sandbox lookup --as USER --dataset D --uscc USCC [--json]
    sandbox violation report | confirm ID | dismiss ID | appeal ID | decide-appeal ID | list
    sandbox disclosures
    sandbox demand file | respond ID | route ID | list [--overdue] | sla
    sandbox correction file ;  sandbox objection file
    sandbox report usage | list | due ;  sandbox usage [--dataset D]

Every command runs the same service function as the gateway (``sandbox.governance``), as
the account named by ``--as`` (the operator acts on someone's instruction; the permission
matrix still applies to that account). ``--json`` prints machine-readable output; errors
print ``{"error": {"code", "message", "hint"}}`` (with ``--json``) and exit 2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer

from sandbox.cli.output import emit_json, fail
from sandbox.config import get_settings
from sandbox.errors import SandboxError

T = TypeVar("T")

application_app = typer.Typer(help="Access applications (SR-11, SR-12).", no_args_is_help=True)
agreement_app = typer.Typer(help="Data-use agreements (SR-13).", no_args_is_help=True)
consent_app = typer.Typer(help="Enterprise authorisations of banks (SR-16).", no_args_is_help=True)
violation_app = typer.Typer(help="Violation reports and sanctions (SR-31, SR-32).", no_args_is_help=True)
demand_app = typer.Typer(help="Demand requests for data not yet open (SR-07).", no_args_is_help=True)
correction_app = typer.Typer(help="Data-correction reports (SR-30).", no_args_is_help=True)
objection_app = typer.Typer(
    help="Objections and complaints of data subjects (权益保护, SR-30).", no_args_is_help=True
)
report_app = typer.Typer(help="Usage / outcome reports of projects (SR-29).", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
AsOpt = Annotated[str, typer.Option("--as", help="Account acting (audit actor).")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log).")]


@contextmanager
def _context() -> Iterator[Any]:
    """A service context on an initialised control DB (``ConfigError`` saying `sandbox init` otherwise)."""
    from sandbox.control.db import open_engine
    from sandbox.services.queries import ServiceContext

    settings = get_settings()
    open_engine(settings.control_db_url).dispose()  # raises ConfigError when not initialised
    ctx = ServiceContext.from_settings(settings)  # the warehouse read-only, as on the query path
    try:
        yield ctx
    finally:
        ctx.close()


def _call(as_json: bool, work: Callable[[Any], T]) -> T:
    try:
        with _context() as ctx:
            return work(ctx)
    except SandboxError as err:
        fail(err, as_json=as_json)


def _show(as_json: bool, value: Any, lines: Callable[[Any], list[str]]) -> None:
    if as_json:
        if isinstance(value, list):
            emit_json([v.to_dict() for v in value])
        else:
            emit_json(value.to_dict())
        return
    for line in lines(value):
        typer.echo(line)


def _application_lines(record: Any) -> list[str]:
    out = [
        f"application {record.id}  {record.status}  project {record.project}  applicant {record.applicant}",
        f"  scenario: {record.scenario}",
        f"  purpose:  {record.purpose}",
        f"  duration: {record.duration_days} days; members: {', '.join(record.members) or '-'}",
    ]
    for item in record.items:
        decided = f" by {item.decided_by}: {item.reason}" if item.decided_by else ""
        out.append(f"  - {item.dataset} [{', '.join(item.departments)}] {item.status}{decided}")
        if item.committee is not None:
            referral = item.committee
            opinion = referral["opinion"] or "opinion awaited"
            conditions = f"; conditions: {referral['conditions']}" if referral["conditions"] else ""
            out.append(f"      expert committee item {referral['item_id']}: {opinion}{conditions}")
    if record.agreement is not None:
        out.extend(_agreement_lines(record.agreement))
    return out


def _agreement_lines(record: Any) -> list[str]:
    return [
        f"agreement {record.id} ({record.ref})  {record.status}  project {record.project}",
        f"  term {record.term_start:%Y-%m-%d} -> {record.term_end:%Y-%m-%d}",
        f"  datasets {', '.join(record.datasets)}",
        f"  digest {record.digest}",
    ]


def _consent_lines(record: Any) -> list[str]:
    return [
        f"authorisation {record.id}  {record.status}  {record.enterprise} ({record.uscc}) -> {record.bank}",
        f"  datasets {', '.join(record.datasets)}; expires {record.expires_at:%Y-%m-%d %H:%M} UTC",
    ]


def _violation_lines(record: Any) -> list[str]:
    out = [
        f"case {record.id}  {record.status}  subject {record.subject}  ({record.category})",
        f"  reported by {record.reporter}: {record.description}",
    ]
    if record.decision_reason:
        out.append(f"  decided by {record.decided_by}: {record.decision_reason}")
    if record.actions:
        actions = record.actions
        out.append(
            f"  measures: account {actions['account']['status']}, budget {actions['budget']}, "
            f"servers {actions['servers']['status']}, exports {actions['exports']['status']}"
        )
    return out


def _each(render: Callable[[Any], list[str]]) -> Callable[[Any], list[str]]:
    def lines(records: Any) -> list[str]:
        out: list[str] = []
        for record in records:
            out.extend(render(record))
        return out or ["(none)"]

    return lines


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


# =========================================================================== applications


@application_app.command("conditions")
def application_conditions(as_json: JsonOpt = False) -> None:
    """The published conditions of every dataset that needs an application (SR-11)."""
    from sandbox.governance import applications

    records = _call(as_json, lambda ctx: applications.published_conditions(ctx.catalog))
    _show(
        as_json,
        records,
        _each(
            lambda r: [
                f"{r.dataset} ({r.tier}, {r.source_tier}) by {', '.join(r.providers)}",
                f"  {r.conditions}",
            ]
        ),
    )


@application_app.command("submit")
def application_submit(
    as_user: AsOpt,
    project: Annotated[str, typer.Option("--project", help="Project applying (you must lead it).")],
    datasets: Annotated[str, typer.Option("--datasets", help="Comma-separated dataset ids.")],
    scenario: Annotated[str, typer.Option("--scenario", help="Application scenario (应用场景).")],
    purpose: Annotated[str, typer.Option("--purpose", help="Purpose of use.")],
    days: Annotated[int, typer.Option("--days", help="Duration of the agreement in days.")],
    measures: Annotated[str, typer.Option("--measures", help="Security measures of the team.")],
    members: Annotated[str, typer.Option("--members", help="Comma-separated team members.")] = "",
    renews: Annotated[
        int | None, typer.Option("--renews", help="Agreement id to renew (same purpose).")
    ] = None,
    undertaking: Annotated[
        bool,
        typer.Option(
            "--undertaking/--no-undertaking", help="The security undertaking (安全承诺书) is signed."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Apply for conditional or restricted datasets (the project's lead)."""
    from sandbox.governance import applications

    record = _call(
        as_json,
        lambda ctx: applications.submit(
            ctx,
            applicant=as_user,
            project=project,
            datasets=_split(datasets),
            scenario=scenario,
            purpose=purpose,
            duration_days=days,
            security_measures=measures,
            members=_split(members),
            renews=renews,
            undertaking=undertaking,
        ),
    )
    _show(as_json, record, _application_lines)


@application_app.command("decide")
def application_decide(
    application_id: Annotated[int, typer.Argument(help="Application id.")],
    as_user: AsOpt,
    reason: ReasonOpt,
    approve: Annotated[bool, typer.Option("--approve/--refuse", help="Approve or refuse.")] = True,
    datasets: Annotated[
        str, typer.Option("--datasets", help="Only these datasets (default: your department's).")
    ] = "",
    as_json: JsonOpt = False,
) -> None:
    """A steward decides the pending datasets of their department."""
    from sandbox.governance import applications

    record = _call(
        as_json,
        lambda ctx: applications.decide(
            ctx,
            steward=as_user,
            application_id=application_id,
            approve=approve,
            reason=reason,
            datasets=_split(datasets) or None,
        ),
    )
    _show(as_json, record, _application_lines)


@application_app.command("show")
def application_show(
    as_user: AsOpt,
    application_id: Annotated[int | None, typer.Argument(help="Application id (default: list).")] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only this status.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one application, or list those you may see."""
    from sandbox.governance import applications

    if application_id is not None:
        record = _call(
            as_json, lambda ctx: applications.show(ctx, user=as_user, application_id=application_id)
        )
        _show(as_json, record, _application_lines)
        return
    records = _call(as_json, lambda ctx: applications.list_applications(ctx, user=as_user, status=status))
    _show(as_json, records, _each(_application_lines))


# =========================================================================== agreements


@agreement_app.command("list")
def agreement_list(
    as_user: AsOpt,
    project: Annotated[str | None, typer.Option("--project")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Agreements you may see."""
    from sandbox.governance import agreements

    records = _call(as_json, lambda ctx: agreements.list_agreements(ctx, user=as_user, project=project))
    _show(as_json, records, _each(_agreement_lines))


@agreement_app.command("show")
def agreement_show(
    agreement_id: Annotated[int, typer.Argument()], as_user: AsOpt, as_json: JsonOpt = False
) -> None:
    """One agreement with its signed document (``--json``)."""
    from sandbox.governance import agreements

    record = _call(
        as_json, lambda ctx: agreements.get_agreement(ctx, user=as_user, agreement_id=agreement_id)
    )
    _show(as_json, record, _agreement_lines)


@agreement_app.command("withdraw")
def agreement_withdraw(
    agreement_id: Annotated[int, typer.Argument()],
    as_user: AsOpt,
    reason: ReasonOpt,
    as_json: JsonOpt = False,
) -> None:
    """Withdraw an agreement; its grants are revoked at once."""
    from sandbox.governance import agreements

    record = _call(
        as_json,
        lambda ctx: agreements.withdraw_agreement(
            ctx, actor=as_user, agreement_id=agreement_id, reason=reason
        ),
    )
    _show(as_json, record, _agreement_lines)


# =========================================================================== consents


def _enterprise_user(ctx: Any, uscc: str) -> str:
    from sandbox.control.db import session_scope
    from sandbox.governance.consent import enterprise_account

    with session_scope(ctx.control_engine) as session:
        return enterprise_account(session, uscc.strip().upper()).username


@consent_app.command("grant")
def consent_grant(
    enterprise: Annotated[str, typer.Option("--enterprise", help="USCC of the enterprise authorising.")],
    bank: Annotated[str, typer.Option("--bank", help="Organisation of the bank (e.g. BANK_A).")],
    datasets: Annotated[str, typer.Option("--datasets", help="Comma-separated dataset ids.")],
    days: Annotated[int, typer.Option("--days", help="How long the authorisation lasts.")],
    as_user: Annotated[
        str | None, typer.Option("--as", help="Acting account (default: the enterprise's own).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record an enterprise's authorisation of a bank (on the enterprise's instruction)."""
    from sandbox.governance import consent

    def work(ctx: Any) -> Any:
        actor = as_user or _enterprise_user(ctx, enterprise)
        return consent.grant(
            ctx, actor=actor, bank=bank, datasets=_split(datasets), days=days, enterprise_uscc=enterprise
        )

    _show(as_json, _call(as_json, work), _consent_lines)


@consent_app.command("revoke")
def consent_revoke(
    consent_id: Annotated[int, typer.Argument(help="Authorisation id.")],
    as_user: Annotated[
        str | None, typer.Option("--as", help="Acting account (default: the enterprise).")
    ] = None,
    reason: Annotated[str, typer.Option("--reason")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Withdraw an authorisation; look-ups under it stop at once."""
    from sandbox.governance import consent
    from sandbox.governance.models import Consent

    def work(ctx: Any) -> Any:
        actor = as_user
        if actor is None:
            from sandbox.control.db import session_scope
            from sandbox.governance.agreements import username_of

            with session_scope(ctx.control_engine) as session:
                row = session.get(Consent, consent_id)
                actor = username_of(session, row.enterprise_id) if row is not None else None
        if actor is None:
            from sandbox.errors import NotFound

            raise NotFound(f"No authorisation {consent_id}.")
        return consent.revoke(ctx, actor=actor, consent_id=consent_id, reason=reason)

    _show(as_json, _call(as_json, work), _consent_lines)


@consent_app.command("list")
def consent_list(as_user: AsOpt, as_json: JsonOpt = False) -> None:
    """Authorisations you may see."""
    from sandbox.governance import consent

    records = _call(as_json, lambda ctx: consent.list_consents(ctx, user=as_user))
    _show(as_json, records, _each(_consent_lines))


@consent_app.command("log")
def consent_log(
    as_user: AsOpt,
    enterprise: Annotated[
        str | None, typer.Option("--enterprise", help="Enterprise account (admins).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Grants, revocations and look-ups about an enterprise's records."""
    from sandbox.governance import consent

    events = _call(as_json, lambda ctx: consent.consent_log(ctx, user=as_user, enterprise=enterprise))
    _show(
        as_json, events, _each(lambda e: [f"{e.seq:>6}  {e.ts}  {e.kind:<16} {e.actor or '-':<10} {e.data}"])
    )


@consent_app.command("demo-enterprise")
def consent_demo_enterprise(
    no_consent: Annotated[bool, typer.Option("--no-consent", help="Do not authorise the demo bank.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add the demo enterprise ``ent`` (USCC of a synthetic enterprise; run after `sandbox synth`)."""
    from sandbox.governance.demo import seed_demo_enterprise

    seed = _call(
        as_json, lambda ctx: seed_demo_enterprise(ctx, ctx.warehouse_engine, with_consent=not no_consent)
    )
    if as_json:
        emit_json(seed.to_dict())
        return
    if not seed.created:
        typer.echo(f"nothing to do: {seed.username} exists (USCC {seed.uscc})")
    for line in seed.created:
        typer.echo(f"created     {line}")
    if seed.password:
        typer.echo(f"password of {seed.username} (shown only now): {seed.password}")


def lookup(
    as_user: AsOpt,
    dataset: Annotated[str, typer.Option("--dataset", help="Enterprise dataset (e.g. enterprise_tax).")],
    uscc: Annotated[str, typer.Option("--uscc", help="USCC of the enterprise.")],
    as_json: JsonOpt = False,
) -> None:
    """A bank analyst reads one enterprise's rows under its authorisation (SR-16); audited."""
    from sandbox.governance import consent

    result = _call(as_json, lambda ctx: consent.lookup(ctx, user=as_user, dataset=dataset, uscc=uscc))
    if as_json:
        emit_json(result.to_dict())
        return
    typer.echo(
        f"{result.dataset}: {len(result.rows)} row(s) of {result.uscc} (authorisation {result.consent_id})"
    )
    typer.echo("  ".join(result.columns))
    for row in result.rows:
        typer.echo("  ".join("" if v is None else str(v) for v in row))


# =========================================================================== violations


@violation_app.command("report")
def violation_report(
    as_user: AsOpt,
    subject: Annotated[str, typer.Option("--subject", help="Account the report is about.")],
    description: Annotated[str, typer.Option("--description", help="What happened.")],
    category: Annotated[
        str, typer.Option("--category", help="illegal_acquisition, beyond_scenario, infringement or other.")
    ] = "other",
    dataset: Annotated[str | None, typer.Option("--dataset")] = None,
    project: Annotated[str | None, typer.Option("--project")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Report a suspected violation (举报)."""
    from sandbox.governance import sanctions

    record = _call(
        as_json,
        lambda ctx: sanctions.report(
            ctx,
            reporter=as_user,
            subject=subject,
            description=description,
            category=category,
            dataset=dataset,
            project=project,
        ),
    )
    _show(as_json, record, _violation_lines)


@violation_app.command("confirm")
def violation_confirm(
    violation_id: Annotated[int, typer.Argument()],
    as_user: AsOpt,
    reason: ReasonOpt,
    summary: Annotated[str | None, typer.Option("--summary", help="Public text of the disclosure.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Confirm: revoke the account, freeze its budget, stop its servers, withdraw its exports, publish.

    The user's hub tokens are deleted and servers stopped through the hub API
    (``sandbox.hub.hubapi.close_access``) with a token holding ``admin:servers``, ``read:users`` and
    ``tokens`` (``$SANDBOX_HUB_STOP_TOKEN_FILE``, else this host's ``sandbox-ops`` token); without one
    the step is recorded as not done.
    """
    from sandbox.governance import sanctions

    record = _call(
        as_json,
        lambda ctx: sanctions.confirm(
            ctx, actor=as_user, violation_id=violation_id, reason=reason, summary=summary
        ),
    )
    _show(as_json, record, _violation_lines)


@violation_app.command("dismiss")
def violation_dismiss(
    violation_id: Annotated[int, typer.Argument()],
    as_user: AsOpt,
    reason: ReasonOpt,
    as_json: JsonOpt = False,
) -> None:
    """Dismiss a report with reasons."""
    from sandbox.governance import sanctions

    record = _call(
        as_json, lambda ctx: sanctions.dismiss(ctx, actor=as_user, violation_id=violation_id, reason=reason)
    )
    _show(as_json, record, _violation_lines)


@violation_app.command("appeal")
def violation_appeal(
    violation_id: Annotated[int, typer.Argument()],
    as_user: AsOpt,
    grounds: Annotated[str, typer.Option("--grounds", help="Grounds of the appeal.")],
    as_json: JsonOpt = False,
) -> None:
    """Record an appeal of the sanctioned account."""
    from sandbox.governance import sanctions

    record = _call(
        as_json, lambda ctx: sanctions.appeal(ctx, user=as_user, violation_id=violation_id, grounds=grounds)
    )
    _show(as_json, record, _violation_lines)


@violation_app.command("decide-appeal")
def violation_decide_appeal(
    violation_id: Annotated[int, typer.Argument()],
    as_user: AsOpt,
    reason: ReasonOpt,
    reinstate: Annotated[
        bool, typer.Option("--reinstate/--uphold", help="Reinstate the account or uphold.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Decide an appeal: uphold the sanction, or reinstate the account."""
    from sandbox.governance import sanctions

    record = _call(
        as_json,
        lambda ctx: sanctions.decide_appeal(
            ctx, actor=as_user, violation_id=violation_id, reinstate=reinstate, reason=reason
        ),
    )
    _show(as_json, record, _violation_lines)


@violation_app.command("list")
def violation_list(
    as_user: AsOpt, status: Annotated[str | None, typer.Option("--status")] = None, as_json: JsonOpt = False
) -> None:
    """Cases you may see."""
    from sandbox.governance import sanctions

    records = _call(as_json, lambda ctx: sanctions.list_violations(ctx, user=as_user, status=status))
    _show(as_json, records, _each(_violation_lines))


def disclosures(as_json: JsonOpt = False) -> None:
    """The public disclosure list."""
    from sandbox.governance import sanctions

    records = _call(as_json, sanctions.disclosures)
    _show(
        as_json,
        records,
        _each(
            lambda d: [
                f"{d.id}  {d.published_at:%Y-%m-%d}  {d.subject} ({d.organisation or '-'})  "
                f"{d.category}  {d.status}",
                f"  {d.summary}  Measures: {d.measures}" + (f"  Note: {d.note}" if d.note else ""),
            ]
        ),
    )


# =========================================================================== channels


def _channel_lines(record: Any) -> list[str]:
    answer = f"; response by {record.responded_by}: {record.response}" if record.response else ""
    return [
        f"{record.kind} {record.id}  {record.status}  -> {record.department or 'operator'}  "
        f"due {record.due_at:%Y-%m-%d} {record.clock.upper() if record.overdue else record.clock}  "
        f"{record.title}{answer}"
    ]


@demand_app.command("file")
def demand_file(
    as_user: AsOpt,
    title: Annotated[str, typer.Option("--title")],
    description: Annotated[str, typer.Option("--description")],
    dataset: Annotated[str | None, typer.Option("--dataset", help="A dataset that is not open yet.")] = None,
    department: Annotated[str | None, typer.Option("--department", help="Provider to route to.")] = None,
    scenario: Annotated[str | None, typer.Option("--scenario")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask for data not yet open (开放需求)."""
    from sandbox.governance import channels

    record = _call(
        as_json,
        lambda ctx: channels.file_demand(
            ctx,
            user=as_user,
            title=title,
            description=description,
            dataset=dataset,
            department=department,
            scenario=scenario,
        ),
    )
    _show(as_json, record, _channel_lines)


@demand_app.command("respond")
def demand_respond(
    request_id: Annotated[int, typer.Argument()],
    as_user: AsOpt,
    status: Annotated[
        str,
        typer.Option(
            "--status",
            help="demand: answered/opened/refused; correction: acknowledged/corrected/rejected; "
            "objection: acknowledged/upheld/partly_upheld/rejected.",
        ),
    ],
    response: Annotated[str, typer.Option("--response", help="The answer or reason the filer reads.")],
    as_json: JsonOpt = False,
) -> None:
    """Answer a demand, correction or objection routed to your department."""
    from sandbox.governance import channels

    record = _call(
        as_json,
        lambda ctx: channels.respond(
            ctx, user=as_user, request_id=request_id, status=status, response=response
        ),
    )
    _show(as_json, record, _channel_lines)


@demand_app.command("route")
def demand_route(
    request_id: Annotated[int, typer.Argument()],
    as_user: AsOpt,
    department: Annotated[str, typer.Option("--department")],
    as_json: JsonOpt = False,
) -> None:
    """Route a request to a provider department (operator)."""
    from sandbox.governance import channels

    record = _call(
        as_json, lambda ctx: channels.route(ctx, user=as_user, request_id=request_id, department=department)
    )
    _show(as_json, record, _channel_lines)


@demand_app.command("list")
def demand_list(
    as_user: AsOpt,
    kind: Annotated[str | None, typer.Option("--kind", help="demand, correction or objection.")] = None,
    status: Annotated[str | None, typer.Option("--status")] = None,
    clock: Annotated[
        str | None, typer.Option("--clock", help="open, overdue, answered_on_time or answered_late.")
    ] = None,
    overdue: Annotated[
        bool, typer.Option("--overdue", help="Only open requests past their due date.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Demand, correction and objection requests you may see, with their SLA clocks."""
    from sandbox.governance import channels

    records = _call(
        as_json,
        lambda ctx: channels.list_requests(
            ctx, user=as_user, kind=kind, status=status, clock=clock, overdue=overdue
        ),
    )
    _show(as_json, records, _each(_channel_lines))


@demand_app.command("sla")
def demand_sla(as_user: AsOpt, as_json: JsonOpt = False) -> None:
    """SLA summary per kind: open, overdue, answered on time / late, median days to answer."""
    from sandbox.governance import channels

    records = _call(as_json, lambda ctx: channels.sla_summary(ctx, user=as_user))
    _show(
        as_json,
        records,
        _each(
            lambda k: [
                f"{k.kind} ({k.sla_days} days): filed {k.filed}, open {k.open}, overdue {k.overdue}, "
                f"on time {k.answered_on_time}, late {k.answered_late}, median days "
                f"{'-' if k.median_days_to_answer is None else k.median_days_to_answer}"
            ]
        ),
    )


@correction_app.command("file")
def correction_file(
    as_user: AsOpt,
    dataset: Annotated[str, typer.Option("--dataset")],
    description: Annotated[str, typer.Option("--description")],
    columns: Annotated[str, typer.Option("--columns")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Flag an error in a dataset (数据纠错); routed to its provider."""
    from sandbox.governance import channels

    record = _call(
        as_json,
        lambda ctx: channels.file_correction(
            ctx, user=as_user, dataset=dataset, description=description, columns=_split(columns)
        ),
    )
    _show(as_json, record, _channel_lines)


@objection_app.command("file")
def objection_file(
    as_user: AsOpt,
    dataset: Annotated[str, typer.Option("--dataset")],
    grounds: Annotated[str, typer.Option("--grounds", help="Why you object or complain.")],
    title: Annotated[str | None, typer.Option("--title")] = None,
    subject: Annotated[str | None, typer.Option("--subject", help="lookup, consent or release.")] = None,
    ref: Annotated[str | None, typer.Option("--ref", help="Its id (look-up: audit seq).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Object to or complain about a dataset (权益保护); routed to its provider."""
    from sandbox.governance import objections

    record = _call(
        as_json,
        lambda ctx: objections.file_objection(
            ctx, user=as_user, dataset=dataset, grounds=grounds, title=title, subject=subject, subject_ref=ref
        ),
    )
    _show(as_json, record, _channel_lines)


@report_app.command("usage")
def report_usage(
    as_user: AsOpt,
    project: Annotated[str, typer.Option("--project")],
    papers: Annotated[int, typer.Option("--papers")] = 0,
    products: Annotated[int, typer.Option("--products")] = 0,
    loans: Annotated[int, typer.Option("--loans", help="Loans supported.")] = 0,
    outputs: Annotated[str, typer.Option("--outputs", help="Comma-separated titles or citations.")] = "",
    benefits: Annotated[str, typer.Option("--benefits")] = "",
    incidents: Annotated[str, typer.Option("--incidents")] = "",
    as_json: JsonOpt = False,
) -> None:
    """File a usage / outcome report for a project (数据利用情况报告)."""
    from sandbox.governance import usage_reports

    record = _call(
        as_json,
        lambda ctx: usage_reports.file_usage_report(
            ctx,
            user=as_user,
            project=project,
            papers=papers,
            products=products,
            loans_supported=loans,
            outputs=_split(outputs),
            benefits=benefits,
            incidents=incidents,
        ),
    )
    _show(
        as_json,
        record,
        lambda r: [
            f"usage report {r.id}  project {r.project}: papers {r.papers}, products {r.products}, "
            f"loans {r.loans_supported}"
        ],
    )


@report_app.command("due")
def report_due(
    overdue: Annotated[bool, typer.Option("--overdue", help="Only overdue reports.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """When each project's next usage report is due (overdue ones block renewal)."""
    from sandbox.governance import usage_reports

    records = _call(as_json, lambda ctx: usage_reports.reporting_status(ctx, overdue_only=overdue))
    _show(
        as_json,
        records,
        _each(
            lambda d: [
                f"{d.project}  {d.agreement}  due {d.due:%Y-%m-%d}  {'OVERDUE' if d.overdue else 'on time'}"
            ]
        ),
    )


def usage(
    as_user: AsOpt,
    dataset: Annotated[str | None, typer.Option("--dataset")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Per-dataset usage (queries, epsilon, exports, look-ups) for providers, operator, supervisors."""
    from sandbox.governance import usage as usage_mod

    records = _call(as_json, lambda ctx: usage_mod.dataset_usage(ctx, user=as_user, dataset=dataset))
    _show(
        as_json,
        records,
        _each(
            lambda u: [
                f"{u.dataset}: queries {u.queries}, refused {u.rejected}, epsilon {u.to_dict()['epsilon']}, "
                f"look-ups {u.lookups}, exports {sum(u.exports.values())}, grants {u.active_grants}"
            ]
        ),
    )


def register(app: typer.Typer) -> None:
    app.add_typer(application_app, name="application")
    app.add_typer(agreement_app, name="agreement")
    app.add_typer(consent_app, name="consent")
    app.add_typer(violation_app, name="violation")
    app.add_typer(demand_app, name="demand")
    app.add_typer(correction_app, name="correction")
    app.add_typer(objection_app, name="objection")
    app.add_typer(report_app, name="report")
    app.command("lookup")(lookup)
    app.command("disclosures")(disclosures)
    app.command("usage")(usage)


__all__ = ["register"]
