"""Governance over HTTP: JSON API under ``<prefix>api/v1/`` and server-rendered pages.

Mounted by the app factory with one line,
``app.include_router(governance.router, prefix=base.rstrip("/"))``; the API paths carry
their own ``/api/v1`` (kept equal to ``sandbox.gateway.app.API_VERSION``).

API (every call with the caller's hub token, except ``GET disclosures``)
    conditions · applications (+ decisions) · agreements (+ withdraw) · consents (+ revoke,
    log) · lookup · violations (+ confirm, dismiss, appeal, appeal-decision) · disclosures
    (public) · demands · corrections · objections · requests (+ sla, response, route) ·
    usage-reports (+ due) ·
    usage/datasets · audit/entries · audit/status · audit/extract

Pages (HTML, same authentication; forms post back and redirect)
    ``<prefix>disclosures`` (public, no sign-in) · ``<prefix>governance/`` and its
    applications, violations, requests, usage, audit and consents pages.

Routes are thin: they call ``sandbox.governance`` services in the threadpool; domain errors
reach the one error handler unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal, TypeVar

import jinja2
from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from sandbox.gateway.deps import Caller, Ctx
from sandbox.gateway.models import ErrorResponse
from sandbox.governance import (
    agreements,
    applications,
    auditor,
    channels,
    consent,
    objections,
    sanctions,
    usage,
    usage_reports,
)
from sandbox.governance import wire as w
from sandbox.governance.sanctions import SanctionServices

API = "/api/v1"
T = TypeVar("T")

router = APIRouter(
    tags=["governance"],
    responses={
        409: {"model": ErrorResponse, "description": "The record is not in a state that allows this."}
    },
)

_TEMPLATES = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(FsPath(__file__).resolve().parent.parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
)

Id = Annotated[int, Path(ge=1, le=2_147_483_647, description="Record id.")]


async def _run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await run_in_threadpool(fn, *args, **kwargs)


def _services(request: Request, ctx: Any) -> SanctionServices:
    """The side-effect services of a sanction: ``app.state.sanction_services`` or the default."""
    injected = getattr(request.app.state, "sanction_services", None)
    return injected if injected is not None else SanctionServices.default(ctx)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _many(model: type[BaseModel], records: list[Any]) -> list[Any]:
    return [model.model_validate(r.to_dict()) for r in records]


# =========================================================================== API: applications


@router.get(f"{API}/conditions", response_model=list[w.ConditionsPublic], summary="Published conditions")
async def get_conditions(caller: Caller, ctx: Ctx) -> list[Any]:
    return _many(w.ConditionsPublic, applications.published_conditions(ctx.catalog))


@router.get(
    f"{API}/applications",
    response_model=list[w.ApplicationPublic],
    summary="Applications you may see",
)
async def get_applications(
    caller: Caller, ctx: Ctx, status: Annotated[str | None, Query(max_length=32)] = None
) -> list[Any]:
    return _many(
        w.ApplicationPublic, await _run(applications.list_applications, ctx, user=caller.name, status=status)
    )


@router.post(
    f"{API}/applications",
    response_model=w.ApplicationPublic,
    status_code=201,
    summary="Apply (project lead)",
)
async def post_application(body: w.ApplicationCreate, caller: Caller, ctx: Ctx) -> Any:
    record = await _run(
        applications.submit,
        ctx,
        applicant=caller.name,
        project=body.project,
        datasets=body.datasets,
        scenario=body.scenario,
        purpose=body.purpose,
        duration_days=body.duration_days,
        security_measures=body.security_measures,
        members=body.members,
        columns=body.columns,
        undertaking=body.undertaking,
        renews=body.renews,
        organisation_uscc=body.organisation_uscc,
    )
    return w.ApplicationPublic.model_validate(record.to_dict())


@router.get(f"{API}/applications/{{application_id}}", response_model=w.ApplicationPublic)
async def get_application(application_id: Id, caller: Caller, ctx: Ctx) -> Any:
    record = await _run(applications.show, ctx, user=caller.name, application_id=application_id)
    return w.ApplicationPublic.model_validate(record.to_dict())


@router.post(
    f"{API}/applications/{{application_id}}/decisions",
    response_model=w.ApplicationPublic,
    summary="Steward decision on the datasets of their department",
)
async def post_decision(application_id: Id, body: w.DecisionCreate, caller: Caller, ctx: Ctx) -> Any:
    record = await _run(
        applications.decide,
        ctx,
        steward=caller.name,
        application_id=application_id,
        approve=body.approve,
        reason=body.reason,
        datasets=body.datasets,
    )
    return w.ApplicationPublic.model_validate(record.to_dict())


@router.get(f"{API}/agreements", response_model=list[w.AgreementPublic], summary="Agreements you may see")
async def get_agreements(
    caller: Caller, ctx: Ctx, project: Annotated[str | None, Query(min_length=1, max_length=64)] = None
) -> list[Any]:
    return _many(
        w.AgreementPublic, await _run(agreements.list_agreements, ctx, user=caller.name, project=project)
    )


@router.get(f"{API}/agreements/{{agreement_id}}", response_model=w.AgreementPublic)
async def get_agreement(agreement_id: Id, caller: Caller, ctx: Ctx) -> Any:
    record = await _run(agreements.get_agreement, ctx, user=caller.name, agreement_id=agreement_id)
    return w.AgreementPublic.model_validate(record.to_dict())


@router.post(
    f"{API}/agreements/{{agreement_id}}/withdraw",
    response_model=w.AgreementPublic,
    summary="Withdraw an agreement; its grants are revoked at once",
)
async def post_withdraw(agreement_id: Id, body: w.ReasonIn, caller: Caller, ctx: Ctx) -> Any:
    record = await _run(
        agreements.withdraw_agreement, ctx, actor=caller.name, agreement_id=agreement_id, reason=body.reason
    )
    return w.AgreementPublic.model_validate(record.to_dict())


# =========================================================================== API: consents, lookup


@router.get(f"{API}/consents", response_model=list[w.ConsentPublic], summary="Enterprise authorisations")
async def get_consents(caller: Caller, ctx: Ctx) -> list[Any]:
    return _many(w.ConsentPublic, await _run(consent.list_consents, ctx, user=caller.name))


@router.post(
    f"{API}/consents",
    response_model=w.ConsentPublic,
    status_code=201,
    summary="Authorise a bank (enterprise)",
)
async def post_consent(body: w.ConsentCreate, caller: Caller, ctx: Ctx) -> Any:
    record = await _run(
        consent.grant, ctx, actor=caller.name, bank=body.bank, datasets=body.datasets, days=body.days
    )
    return w.ConsentPublic.model_validate(record.to_dict())


@router.post(f"{API}/consents/{{consent_id}}/revoke", response_model=w.ConsentPublic)
async def post_consent_revoke(consent_id: Id, body: w.ReasonIn, caller: Caller, ctx: Ctx) -> Any:
    record = await _run(consent.revoke, ctx, actor=caller.name, consent_id=consent_id, reason=body.reason)
    return w.ConsentPublic.model_validate(record.to_dict())


@router.get(
    f"{API}/consents/log",
    response_model=list[w.ConsentEventPublic],
    summary="Grants, revocations and look-ups about an enterprise's records",
)
async def get_consent_log(
    caller: Caller, ctx: Ctx, enterprise: Annotated[str | None, Query(min_length=1, max_length=64)] = None
) -> list[Any]:
    return _many(
        w.ConsentEventPublic, await _run(consent.consent_log, ctx, user=caller.name, enterprise=enterprise)
    )


@router.post(
    f"{API}/lookup",
    response_model=w.LookupPublic,
    summary="One enterprise's rows, for a bank it has authorised (SR-16)",
)
async def post_lookup(body: w.LookupRequest, caller: Caller, ctx: Ctx) -> Any:
    record = await _run(consent.lookup, ctx, user=caller.name, dataset=body.dataset, uscc=body.uscc)
    return w.LookupPublic.model_validate(record.to_dict())


# =========================================================================== API: violations


@router.get(
    f"{API}/violations",
    response_model=list[w.ViolationPublic],
    summary="Violation cases you may see",
)
async def get_violations(
    caller: Caller, ctx: Ctx, status: Annotated[str | None, Query(max_length=32)] = None
) -> list[Any]:
    return _many(
        w.ViolationPublic, await _run(sanctions.list_violations, ctx, user=caller.name, status=status)
    )


@router.post(f"{API}/violations", response_model=w.ViolationPublic, status_code=201, summary="Report (举报)")
async def post_violation(body: w.ViolationCreate, caller: Caller, ctx: Ctx) -> Any:
    record = await _run(
        sanctions.report,
        ctx,
        reporter=caller.name,
        subject=body.subject,
        description=body.description,
        category=body.category,
        dataset=body.dataset,
        project=body.project,
    )
    return w.ViolationPublic.model_validate(record.to_dict())


@router.get(f"{API}/violations/{{violation_id}}", response_model=w.ViolationPublic)
async def get_violation(violation_id: Id, caller: Caller, ctx: Ctx) -> Any:
    record = await _run(sanctions.get_violation, ctx, user=caller.name, violation_id=violation_id)
    return w.ViolationPublic.model_validate(record.to_dict())


@router.post(
    f"{API}/violations/{{violation_id}}/confirm",
    response_model=w.ViolationPublic,
    summary="Confirm: close the account's access at once and publish a disclosure",
)
async def post_confirm(
    violation_id: Id, body: w.ConfirmIn, request: Request, caller: Caller, ctx: Ctx
) -> Any:
    record = await _run(
        sanctions.confirm,
        ctx,
        actor=caller.name,
        violation_id=violation_id,
        reason=body.reason,
        summary=body.summary or None,
        services=_services(request, ctx),
    )
    return w.ViolationPublic.model_validate(record.to_dict())


@router.post(f"{API}/violations/{{violation_id}}/dismiss", response_model=w.ViolationPublic)
async def post_dismiss(violation_id: Id, body: w.ReasonIn, caller: Caller, ctx: Ctx) -> Any:
    record = await _run(
        sanctions.dismiss, ctx, actor=caller.name, violation_id=violation_id, reason=body.reason
    )
    return w.ViolationPublic.model_validate(record.to_dict())


@router.post(f"{API}/violations/{{violation_id}}/appeal", response_model=w.ViolationPublic)
async def post_appeal(violation_id: Id, body: w.AppealIn, caller: Caller, ctx: Ctx) -> Any:
    record = await _run(
        sanctions.appeal, ctx, user=caller.name, violation_id=violation_id, grounds=body.grounds
    )
    return w.ViolationPublic.model_validate(record.to_dict())


@router.post(f"{API}/violations/{{violation_id}}/appeal-decision", response_model=w.ViolationPublic)
async def post_appeal_decision(violation_id: Id, body: w.AppealDecision, caller: Caller, ctx: Ctx) -> Any:
    record = await _run(
        sanctions.decide_appeal,
        ctx,
        actor=caller.name,
        violation_id=violation_id,
        reinstate=body.reinstate,
        reason=body.reason,
    )
    return w.ViolationPublic.model_validate(record.to_dict())


@router.get(
    f"{API}/disclosures",
    response_model=list[w.DisclosurePublic],
    summary="The public disclosure list (no token needed)",
)
async def get_disclosures(ctx: Ctx) -> list[Any]:
    return _many(w.DisclosurePublic, await _run(sanctions.disclosures, ctx))


# =========================================================================== API: channels


@router.post(
    f"{API}/demands",
    response_model=w.ChannelPublic,
    status_code=201,
    summary="Ask for data (开放需求)",
)
async def post_demand(body: w.DemandCreate, caller: Caller, ctx: Ctx) -> Any:
    record = await _run(
        channels.file_demand,
        ctx,
        user=caller.name,
        title=body.title,
        description=body.description,
        dataset=body.dataset,
        columns=body.columns,
        scenario=body.scenario,
        department=body.department,
    )
    return w.ChannelPublic.model_validate(record.to_dict())


@router.post(
    f"{API}/corrections",
    response_model=w.ChannelPublic,
    status_code=201,
    summary="Report a data error (数据纠错)",
)
async def post_correction(body: w.CorrectionCreate, caller: Caller, ctx: Ctx) -> Any:
    record = await _run(
        channels.file_correction,
        ctx,
        user=caller.name,
        dataset=body.dataset,
        description=body.description,
        columns=body.columns,
        title=body.title,
    )
    return w.ChannelPublic.model_validate(record.to_dict())


@router.post(
    f"{API}/objections",
    response_model=w.ChannelPublic,
    status_code=201,
    summary="Object or complain (权益保护)",
)
async def post_objection(body: w.ObjectionCreate, caller: Caller, ctx: Ctx) -> Any:
    record = await _run(
        objections.file_objection,
        ctx,
        user=caller.name,
        dataset=body.dataset,
        grounds=body.grounds,
        title=body.title,
        subject=body.subject,
        subject_ref=body.subject_ref,
    )
    return w.ChannelPublic.model_validate(record.to_dict())


@router.get(
    f"{API}/requests",
    response_model=list[w.ChannelPublic],
    summary="Demand, correction and objection requests with their SLA clocks",
)
async def get_requests(
    caller: Caller,
    ctx: Ctx,
    kind: Literal["demand", "correction", "objection"] | None = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    clock: Literal["open", "overdue", "answered_on_time", "answered_late"] | None = None,
    overdue: bool = False,
) -> list[Any]:
    records = await _run(
        channels.list_requests, ctx, user=caller.name, kind=kind, status=status, clock=clock, overdue=overdue
    )
    return _many(w.ChannelPublic, records)


@router.get(
    f"{API}/requests/sla",
    response_model=list[w.SlaSummaryPublic],
    summary="SLA summary per kind (open, overdue, answered on time / late, median days)",
)
async def get_requests_sla(caller: Caller, ctx: Ctx) -> list[Any]:
    return _many(w.SlaSummaryPublic, await _run(channels.sla_summary, ctx, user=caller.name))


@router.get(f"{API}/requests/{{request_id}}", response_model=w.ChannelPublic)
async def get_request(request_id: Id, caller: Caller, ctx: Ctx) -> Any:
    record = await _run(channels.get_request, ctx, user=caller.name, request_id=request_id)
    return w.ChannelPublic.model_validate(record.to_dict())


@router.post(f"{API}/requests/{{request_id}}/response", response_model=w.ChannelPublic, summary="Answer")
async def post_response(request_id: Id, body: w.ResponseIn, caller: Caller, ctx: Ctx) -> Any:
    record = await _run(
        channels.respond,
        ctx,
        user=caller.name,
        request_id=request_id,
        status=body.status,
        response=body.response,
    )
    return w.ChannelPublic.model_validate(record.to_dict())


@router.post(
    f"{API}/requests/{{request_id}}/route",
    response_model=w.ChannelPublic,
    summary="Route (operator)",
)
async def post_route(request_id: Id, body: w.RouteIn, caller: Caller, ctx: Ctx) -> Any:
    record = await _run(
        channels.route, ctx, user=caller.name, request_id=request_id, department=body.department
    )
    return w.ChannelPublic.model_validate(record.to_dict())


@router.post(
    f"{API}/usage-reports",
    response_model=w.UsageReportPublic,
    status_code=201,
    summary="File a usage report",
)
async def post_usage_report(body: w.UsageReportCreate, caller: Caller, ctx: Ctx) -> Any:
    record = await _run(
        usage_reports.file_usage_report,
        ctx,
        user=caller.name,
        project=body.project,
        papers=body.papers,
        products=body.products,
        loans_supported=body.loans_supported,
        outputs=body.outputs,
        benefits=body.benefits,
        incidents=body.incidents,
        cites_sources=body.cites_sources,
        agreement_id=body.agreement_id,
    )
    return w.UsageReportPublic.model_validate(record.to_dict())


@router.get(f"{API}/usage-reports", response_model=list[w.UsageReportPublic])
async def get_usage_reports(
    caller: Caller, ctx: Ctx, project: Annotated[str | None, Query(min_length=1, max_length=64)] = None
) -> list[Any]:
    reports = await _run(usage_reports.list_usage_reports, ctx, user=caller.name, project=project)
    return _many(w.UsageReportPublic, reports)


@router.get(
    f"{API}/usage-reports/due",
    response_model=list[w.ReportDuePublic],
    summary="Reporting position, overdue flag",
)
async def get_reports_due(caller: Caller, ctx: Ctx, overdue: bool = False) -> list[Any]:
    return _many(w.ReportDuePublic, await _run(_reporting, ctx, caller.name, overdue))


def _reporting(ctx: Any, user: str, overdue: bool) -> list[usage_reports.ReportDue]:
    return usage_reports.reporting_status(ctx, user=user, overdue_only=overdue)


@router.get(
    f"{API}/usage/datasets",
    response_model=list[w.DatasetUsagePublic],
    summary="Per-dataset usage for providers (queries, epsilon, exports)",
)
async def get_dataset_usage(
    caller: Caller,
    ctx: Ctx,
    dataset: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    since: datetime | None = None,
) -> list[Any]:
    records = await _run(usage.dataset_usage, ctx, user=caller.name, dataset=dataset, since=_utc(since))
    return _many(w.DatasetUsagePublic, records)


# =========================================================================== API: auditor


@router.get(f"{API}/audit/entries", response_model=w.AuditPagePublic, summary="Audit entries you may read")
async def get_audit_entries(
    caller: Caller,
    ctx: Ctx,
    kind: Annotated[
        str | None, Query(max_length=64, description="Exact kind, or a prefix ending in '.'.")
    ] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    after: Annotated[int, Query(ge=0, le=2_147_483_647)] = 0,
    limit: Annotated[int, Query(ge=1, le=auditor.MAX_PAGE)] = 100,
) -> Any:
    page = await _run(
        auditor.entries,
        ctx,
        user=caller.name,
        kind=kind,
        actor=actor,
        since=_utc(since),
        after=after,
        limit=limit,
    )
    return w.AuditPagePublic.model_validate(page.to_dict())


@router.get(f"{API}/audit/status", response_model=w.ChainStatusPublic, summary="Chain verification, head")
async def get_audit_status(caller: Caller, ctx: Ctx) -> Any:
    return w.ChainStatusPublic.model_validate(
        (await _run(auditor.chain_status, ctx, user=caller.name)).to_dict()
    )


@router.get(
    f"{API}/audit/extract",
    response_class=Response,
    summary="The chain as JSON lines (verify with `sandbox audit verify --file`)",
    responses={200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}}},
)
async def get_audit_extract(caller: Caller, ctx: Ctx) -> Response:
    lines = await _run(lambda: list(auditor.extract_lines(ctx, user=caller.name)))
    return Response(
        "".join(lines),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="audit-extract.jsonl"'},
    )


# =========================================================================== pages


def _page(request: Request, name: str, **context: Any) -> HTMLResponse:
    base = getattr(request.app.state, "prefix", "/")
    return _TEMPLATES.TemplateResponse(request, f"governance/{name}", {"base": base, **context})


def _back(request: Request, path: str) -> RedirectResponse:
    base = getattr(request.app.state, "prefix", "/")
    return RedirectResponse(base + path, status_code=303)


@router.get("/disclosures", response_class=HTMLResponse, include_in_schema=False)
async def page_disclosures(request: Request, ctx: Ctx) -> HTMLResponse:
    """The public disclosure list: no sign-in."""
    return _page(request, "disclosures.html", entries=await _run(sanctions.disclosures, ctx), user=None)


@router.get("/governance/", response_class=HTMLResponse, include_in_schema=False)
async def page_index(request: Request, caller: Caller, ctx: Ctx) -> HTMLResponse:
    pending = await _run(applications.list_applications, ctx, user=caller.name, status="submitted")
    cases = await _run(sanctions.list_violations, ctx, user=caller.name, status="reported")
    open_requests = await _run(channels.list_requests, ctx, user=caller.name, status="received")
    return _page(
        request,
        "index.html",
        user=caller.account,
        applications=pending,
        violations=cases,
        requests=open_requests,
    )


@router.get("/governance/applications", response_class=HTMLResponse, include_in_schema=False)
async def page_applications(request: Request, caller: Caller, ctx: Ctx) -> HTMLResponse:
    records = await _run(applications.list_applications, ctx, user=caller.name)
    return _page(request, "applications.html", user=caller.account, applications=records)


@router.get("/governance/applications/{application_id}", response_class=HTMLResponse, include_in_schema=False)
async def page_application(application_id: Id, request: Request, caller: Caller, ctx: Ctx) -> HTMLResponse:
    record = await _run(applications.show, ctx, user=caller.name, application_id=application_id)
    return _page(request, "application.html", user=caller.account, app=record)


@router.post("/governance/applications/{application_id}/decide", include_in_schema=False)
async def page_decide(
    application_id: Id,
    caller: Caller,
    ctx: Ctx,
    request: Request,
    decision: Annotated[Literal["approve", "refuse"], Form()],
    reason: Annotated[str, Form(min_length=1, max_length=10_000)],
) -> RedirectResponse:
    await _run(
        applications.decide,
        ctx,
        steward=caller.name,
        application_id=application_id,
        approve=decision == "approve",
        reason=reason,
    )
    return _back(request, f"governance/applications/{application_id}")


@router.get("/governance/violations", response_class=HTMLResponse, include_in_schema=False)
async def page_violations(request: Request, caller: Caller, ctx: Ctx) -> HTMLResponse:
    records = await _run(sanctions.list_violations, ctx, user=caller.name)
    return _page(request, "violations.html", user=caller.account, violations=records)


@router.get("/governance/violations/{violation_id}", response_class=HTMLResponse, include_in_schema=False)
async def page_violation(violation_id: Id, request: Request, caller: Caller, ctx: Ctx) -> HTMLResponse:
    record = await _run(sanctions.get_violation, ctx, user=caller.name, violation_id=violation_id)
    return _page(request, "violation.html", user=caller.account, case=record)


@router.post("/governance/violations/{violation_id}/decide", include_in_schema=False)
async def page_violation_decide(
    violation_id: Id,
    caller: Caller,
    ctx: Ctx,
    request: Request,
    decision: Annotated[Literal["confirm", "dismiss"], Form()],
    reason: Annotated[str, Form(min_length=1, max_length=10_000)],
    summary: Annotated[str, Form(max_length=2000)] = "",
) -> RedirectResponse:
    if decision == "confirm":
        await _run(
            sanctions.confirm,
            ctx,
            actor=caller.name,
            violation_id=violation_id,
            reason=reason,
            summary=summary or None,
            services=_services(request, ctx),
        )
    else:
        await _run(sanctions.dismiss, ctx, actor=caller.name, violation_id=violation_id, reason=reason)
    return _back(request, f"governance/violations/{violation_id}")


@router.get("/governance/requests", response_class=HTMLResponse, include_in_schema=False)
async def page_requests(request: Request, caller: Caller, ctx: Ctx) -> HTMLResponse:
    records = await _run(channels.list_requests, ctx, user=caller.name)
    reports = await _run(usage_reports.list_usage_reports, ctx, user=caller.name)
    return _page(request, "requests.html", user=caller.account, requests=records, reports=reports)


@router.get("/governance/usage", response_class=HTMLResponse, include_in_schema=False)
async def page_usage(request: Request, caller: Caller, ctx: Ctx) -> HTMLResponse:
    records = await _run(usage.dataset_usage, ctx, user=caller.name)
    due = await _run(usage_reports.reporting_status, ctx, user=caller.name)
    return _page(request, "usage.html", user=caller.account, usage=records, due=due)


@router.get("/governance/audit", response_class=HTMLResponse, include_in_schema=False)
async def page_audit(
    request: Request,
    caller: Caller,
    ctx: Ctx,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    after: Annotated[int, Query(ge=0, le=2_147_483_647)] = 0,
) -> HTMLResponse:
    page = await _run(
        auditor.entries,
        ctx,
        user=caller.name,
        kind=kind or None,
        actor=actor or None,
        since=_utc(since),
        after=after,
    )
    status = await _run(_status_or_none, ctx, caller.name)
    filters = {"kind": kind or "", "actor": actor or "", "since": since.isoformat() if since else ""}
    return _page(request, "audit.html", user=caller.account, page=page, status=status, filters=filters)


@router.get("/governance/audit/extract", include_in_schema=False)
async def page_audit_extract(caller: Caller, ctx: Ctx) -> Response:
    """The extract for browsers (the pages listener serves no ``/api`` path)."""
    return await get_audit_extract(caller, ctx)


def _status_or_none(ctx: Any, user: str) -> auditor.ChainStatus | None:
    from sandbox.errors import AccessDenied

    try:
        return auditor.chain_status(ctx, user=user)
    except AccessDenied:
        return None


@router.get("/governance/consents", response_class=HTMLResponse, include_in_schema=False)
async def page_consents(request: Request, caller: Caller, ctx: Ctx) -> HTMLResponse:
    records = await _run(consent.list_consents, ctx, user=caller.name)
    log = (
        await _run(consent.consent_log, ctx, user=caller.name) if caller.account.role == "enterprise" else []
    )
    return _page(request, "consents.html", user=caller.account, consents=records, log=log)


__all__ = ["router"]
