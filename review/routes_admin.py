"""A tenant's oversight: the audit trail (page and CSV, for QA), its users and roles, and the invited experts'
grants (admin only). Every change to a user or role is an entry of the audit trail; the expert grants record
their own (:mod:`lineqa.review.experts`)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Engine

from lineqa.db import tenant_scope
from lineqa.review import audit
from lineqa.review.auth import Role
from lineqa.review.experts import EXPERT_ROLES, parse_expiry, parse_scope
from lineqa.review.routing import RouteContext
from lineqa.review.web import AUDIT_COLUMNS, audit_row, csv_response


def register(app: FastAPI, ctx: RouteContext) -> None:
    """``audit``, ``users``, ``change_user``, ``experts`` and ``change_expert`` on ``app``."""
    services, page, user_of = ctx.services, ctx.page, ctx.user_of

    @app.get("/t/{tenant}/audit", name="audit")
    def audit_trail(request: Request, tenant: str, format: str = "html") -> Response:
        found = audit.entries(services.engine, tenant, limit=5000 if format == "csv" else 500)
        if format == "csv":
            return csv_response(list(AUDIT_COLUMNS), [audit_row(e) for e in found], f"{tenant}-audit.csv")
        return page(request, "audit.html", columns=AUDIT_COLUMNS, rows=[audit_row(e) for e in found])

    @app.get("/t/{tenant}/users", name="users")
    def users(request: Request, tenant: str) -> HTMLResponse:
        return page(request, "users.html", users=services.users.users(tenant), roles=list(Role))

    @app.post("/t/{tenant}/users", name="change_user")
    def change_user(
        request: Request,
        tenant: str,
        action: Annotated[str, Form(pattern="^(add|grant|revoke)$")],
        username: Annotated[str, Form(max_length=128)],
        role: Annotated[Role, Form()],
        password: Annotated[str, Form(max_length=1024)] = "",
    ) -> Response:
        actor = user_of(request).username
        if action == "add":
            services.users.add_user(username, password)
            _audit_user(services.engine, tenant, actor, audit.AuditAction.USER_ADD, username, None, {"user": username})
        changed = (services.users.revoke if action == "revoke" else services.users.grant)(username, tenant, role)
        if changed:
            kind = audit.AuditAction.ROLE_REVOKE if action == "revoke" else audit.AuditAction.ROLE_GRANT
            _audit_user(services.engine, tenant, actor, kind, username, None, {"role": role.value})
        return RedirectResponse(f"/t/{tenant}/users", status_code=303)

    @app.get("/t/{tenant}/experts", name="experts")
    def experts(request: Request, tenant: str) -> HTMLResponse:
        at = datetime.now(timezone.utc)
        grants = [(g, g.status(at).value) for g in services.experts.grants(tenant)]
        return page(request, "experts.html", grants=grants, roles=EXPERT_ROLES)

    @app.post("/t/{tenant}/experts", name="change_expert")
    def change_expert(
        request: Request,
        tenant: str,
        action: Annotated[str, Form(pattern="^(invite|revoke)$")],
        username: Annotated[str, Form(max_length=128)] = "",
        role: Annotated[Role, Form()] = Role.OPERATOR,
        scope: Annotated[str, Form(max_length=2000)] = "",
        expires: Annotated[str, Form(max_length=40)] = "",
        grant: Annotated[int | None, Form()] = None,
    ) -> Response:
        actor = user_of(request).username
        if action == "invite":
            items = [parse_scope(item) for item in scope.replace(",", " ").split()]
            services.experts.invite(tenant, username.strip(), role, items, parse_expiry(expires), actor)
        else:
            services.experts.revoke(tenant, actor, grant_id=grant, username=username.strip() or None)
        return RedirectResponse(f"/t/{tenant}/experts", status_code=303)


def _audit_user(
    engine: Engine, tenant: str, actor: str, action: audit.AuditAction, username: str, old: Any, new: Any
) -> None:
    with tenant_scope(engine, tenant).begin() as conn:
        audit.append(conn, tenant, actor, action, f"user:{username}", old, new)
