"""A tenant's figures over the last ``days`` days: the dashboard page, its charts as PNG and its tables as CSV,
each computed from the same :class:`lineqa.review.dashboards.Dashboard` so the three always agree."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from lineqa.review import dashboards
from lineqa.review.errors import BadInputError, NotFoundError
from lineqa.review.routing import RouteContext
from lineqa.review.web import csv_response


def register(app: FastAPI, ctx: RouteContext) -> None:
    """``dashboard``, ``chart`` and ``export`` on ``app``."""
    services, page = ctx.services, ctx.page

    def board(tenant: str, days: int) -> dashboards.Dashboard:
        if not 1 <= days <= 366:
            raise BadInputError("days must be 1-366")
        until = datetime.now(timezone.utc)
        return dashboards.compute(
            services.engine, tenant, until - timedelta(days=days), until, services.zone, services.shifts
        )

    @app.get("/t/{tenant}/dashboard", name="dashboard")
    def dashboard(request: Request, tenant: str, days: int = 30) -> HTMLResponse:
        return page(request, "dashboard.html", board=board(tenant, days), days=days, charts=dashboards.CHARTS)

    @app.get("/t/{tenant}/dashboard/{chart}.png", name="chart")
    def chart(tenant: str, chart: str, days: int = 30) -> Response:
        return Response(dashboards.chart_png(board(tenant, days), chart), media_type="image/png")

    @app.get("/t/{tenant}/export/{table}.csv", name="export")
    def export(tenant: str, table: str, days: int = 30) -> Response:
        tables = board(tenant, days).tables()
        if table not in tables:
            raise NotFoundError(f"no table {table!r} (tables: {', '.join(tables)})")
        return csv_response(*tables[table], f"{tenant}-{table}.csv")
