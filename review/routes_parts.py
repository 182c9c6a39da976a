"""The review queue and its parts: the filtered queue, one part with its history and the box editor, the part's
image, and the decision on it (confirm, correct, ...), which moves on to the next part of the same queue. An
invited expert sees only the parts of the lines and recipes granted (:func:`lineqa.review.access.parts_within`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated
from urllib.parse import urlencode

from fastapi import FastAPI, Form, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from lineqa.review import api_view, app_log, audit, label_diff, part_view
from lineqa.review.access import parts_within
from lineqa.review.boxes import parse_boxes
from lineqa.review.decisions import DecisionKind
from lineqa.review.errors import NotFoundError
from lineqa.review.queue import PAGE_SIZE
from lineqa.review.queue_filter import ORDER_NAMES, STATUSES, VERDICTS, parse_filter, parse_query_string
from lineqa.review.routing import RouteContext, logger
from lineqa.review.web import image_response, image_size


def register(app: FastAPI, ctx: RouteContext) -> None:
    """``queue``, ``part``, ``part_image`` and ``decide`` on ``app``."""
    services, page, user_of = ctx.services, ctx.page, ctx.user_of

    @app.get("/t/{tenant}/queue", name="queue")
    def queue(request: Request, tenant: str) -> Response:
        within = parts_within(user_of(request), tenant, "queue")
        wanted = replace(parse_filter(request.query_params), within=within)
        shown = services.queue.page(tenant, wanted)
        if api_view.wants_json(request):
            return api_view.json_response(api_view.queue_json(shown, wanted.page, PAGE_SIZE))
        return page(
            request,
            "queue.html",
            shown=shown,
            filter=wanted,
            query=wanted.query(),
            page_size=PAGE_SIZE,
            choices=services.queue.choices(tenant, within),
            verdicts=VERDICTS,
            statuses=STATUSES,
            orders=ORDER_NAMES,
            notice=part_view.notice(services.queue, tenant, request.query_params, within),
        )

    @app.get("/t/{tenant}/parts/{record_id}", name="part")
    def part(request: Request, tenant: str, record_id: str) -> Response:
        within = parts_within(user_of(request), tenant, "part")
        wanted = replace(parse_filter(request.query_params), within=within)
        found = services.queue.part(tenant, record_id, within)
        if api_view.wants_json(request):
            return api_view.json_response(api_view.part_json(tenant, found, services.decisions.classes(tenant, found)))
        previous, following = services.queue.neighbours(tenant, wanted, record_id)
        carried = wanted.query_string()
        history = [
            (entry, label_diff.diff(entry.old.get("labels", []), entry.new.get("labels", [])))
            for entry in audit.entries(services.engine, tenant, obj=f"part:{record_id}")
        ]
        return page(
            request,
            "part.html",
            part=found,
            editor=part_view.editor_data(tenant, found, services.decisions.classes(tenant, found)),
            history=history,
            carried=carried,
            links={
                "previous": f"/t/{tenant}/parts/{previous}?{carried}" if previous else None,
                "next": f"/t/{tenant}/parts/{following}?{carried}" if following else None,
                "queue": f"/t/{tenant}/queue?{carried}",
            },
            order_name=ORDER_NAMES[wanted.order],
            notice=part_view.notice(services.queue, tenant, request.query_params, within),
            kind_names=part_view.KIND_NAMES,
        )

    @app.get("/t/{tenant}/parts/{record_id}/image", name="part_image")
    def partimage_response(request: Request, tenant: str, record_id: str) -> FileResponse:
        found = services.queue.part(tenant, record_id, parts_within(user_of(request), tenant, "part_image"))
        if found.image_key is None:
            raise NotFoundError("the gateway kept no image of this part (image policy)")
        return image_response(services.store, tenant, found.image_key)

    @app.post("/t/{tenant}/parts/{record_id}/decisions", name="decide")
    def decide(
        request: Request,
        tenant: str,
        record_id: str,
        kind: Annotated[DecisionKind, Form()],
        boxes: Annotated[str, Form(max_length=200_000)] = "",
        reason: Annotated[str, Form(max_length=2000)] = "",
        then: Annotated[str, Form()] = "next",
        carried: Annotated[str, Form(alias="queue", max_length=4000)] = "",
    ) -> Response:
        within = parts_within(user_of(request), tenant, "decide")
        wanted = replace(parse_query_string(carried), within=within)
        found = services.queue.part(tenant, record_id, within)
        corrected = None
        if kind is DecisionKind.CORRECT:
            size = image_size(services.store, tenant, found.image_key)
            corrected = parse_boxes(boxes or "[]", services.decisions.classes(tenant, found), size)
        who = user_of(request).username
        outcome = services.decisions.decide(tenant, record_id, kind, corrected, reason.strip(), who)
        logger.info(
            "decision on part %s by %s: %s%s",
            found.row.part_id or record_id,
            who,
            outcome.kind.value,
            "" if outcome.recorded else " (no change, nothing recorded)",
            extra=app_log.fields(
                event="decision",
                tenant=tenant,
                record_id=record_id,
                part_id=found.row.part_id,
                user=who,
                asked=kind.value,
                kind=outcome.kind.value,
                recorded=outcome.recorded,
                decision_id=outcome.decision_id,
                boxes=len(outcome.labels),
            ),
        )
        if api_view.wants_json(request):
            return api_view.json_response(api_view.outcome_json(tenant, record_id, outcome))
        following = services.queue.after_decision(tenant, wanted, record_id) if then == "next" else record_id
        target = f"/t/{tenant}/parts/{following}" if following else f"/t/{tenant}/queue"
        said = {"done" if outcome.recorded else "kept": str(outcome.decision_id)}
        return RedirectResponse(f"{target}?{urlencode({**wanted.query(), **said})}", status_code=303)
