"""Who may use which route: one table, read by the app's guard on every request (deny by default).

Every route of the app has a name. A name in :data:`ROUTE_ROLES` may be used by a signed-in user holding one
of its roles *in the tenant named by the URL*; a user holding no role there gets 404, exactly as for a
tenant that does not exist, so tenant names cannot be probed. Routes in :data:`ACCOUNT_ROUTES` need a
session but no tenant; :data:`PUBLIC_ROUTES` need nothing. A route in none of the three is refused, so a
new route is closed until it is added here (a test checks the app has no route outside these tables).

An invited expert (:mod:`lineqa.review.experts`: grants in a tenant, no membership) may use only the routes of
:data:`EXPERT_AREAS`, and each only while a live grant of its area carries one of the route's roles: the parts of
granted lines, recipes or the whole queue; granted datasets; granted training runs (read-only); the dashboards with
a whole-queue grant. Anything
else of that tenant, the objects outside the grants included, is 404 for them, as for a stranger, so a grant
shows nothing of what it leaves out (not even that it exists).
"""

from __future__ import annotations

from enum import Enum

from lineqa.review.auth import Principal, Role
from lineqa.review.errors import ForbiddenError, NotFoundError, NotSignedInError
from lineqa.review.experts import ExpertScope
from lineqa.review.queue_filter import PartScope

_ALL = frozenset(Role)
_QA = frozenset({Role.QA, Role.ADMIN})
_WATCH = frozenset({Role.OPERATOR, Role.QA, Role.ADMIN})
_DATA = frozenset({Role.LABELLER, Role.QA, Role.ADMIN})
_LABEL = frozenset({Role.LABELLER, Role.ADMIN})
_ADMIN = frozenset({Role.ADMIN})

ROUTE_ROLES: dict[str, frozenset[Role]] = {
    "queue": _ALL,
    "part": _ALL,
    "part_image": _ALL,
    "decide": _QA,
    "dashboard": _WATCH,
    "chart": _WATCH,
    "export": _WATCH,
    "datasets": _DATA,
    "dataset_version": _DATA,
    "sample": _DATA,
    "sample_image": _DATA,
    "fix_labels": _LABEL,
    "snapshot": _LABEL,
    "runs": _QA,
    "run": _QA,
    "run_picture": _QA,
    "audit": _QA,
    "users": _ADMIN,
    "change_user": _ADMIN,
    "experts": _ADMIN,
    "change_expert": _ADMIN,
}
ACCOUNT_ROUTES = frozenset({"home", "logout"})


class ExpertArea(str, Enum):
    PARTS = "parts"  # some line, recipe or the whole queue granted
    WHOLE_QUEUE = "whole queue"  # tenant-wide figures: only with the whole queue granted
    DATASETS = "datasets"
    RUNS = "runs"  # training runs named by run:NAME grants


EXPERT_AREAS: dict[str, ExpertArea] = {
    "queue": ExpertArea.PARTS,
    "part": ExpertArea.PARTS,
    "part_image": ExpertArea.PARTS,
    "decide": ExpertArea.PARTS,
    "dashboard": ExpertArea.WHOLE_QUEUE,
    "chart": ExpertArea.WHOLE_QUEUE,
    "export": ExpertArea.WHOLE_QUEUE,
    "datasets": ExpertArea.DATASETS,
    "dataset_version": ExpertArea.DATASETS,
    "sample": ExpertArea.DATASETS,
    "sample_image": ExpertArea.DATASETS,
    "fix_labels": ExpertArea.DATASETS,
    "snapshot": ExpertArea.DATASETS,
    "runs": ExpertArea.RUNS,
    "run": ExpertArea.RUNS,
    "run_picture": ExpertArea.RUNS,
}
PUBLIC_ROUTES = frozenset({"login_form", "login", "static", "favicon"})


def authorize(route: str, principal: Principal | None, tenant: str | None) -> Principal | None:
    """Raise unless ``principal`` may use ``route`` (in ``tenant`` for tenant routes); the principal back."""
    if route in PUBLIC_ROUTES:
        return principal
    if principal is None:
        raise NotSignedInError("sign in first")
    if route in ACCOUNT_ROUTES:
        return principal
    allowed = ROUTE_ROLES.get(route)
    if allowed is None or tenant is None:
        raise ForbiddenError(f"route {route!r} is not open to anyone")
    held = principal.roles_in(tenant)
    if not held:
        scope = principal.experts.get(tenant)
        if scope is None or not expert_may(route, scope):
            raise NotFoundError(f"no tenant {tenant!r}" if scope is None else "not found")
        return principal
    if not held & allowed:
        raise ForbiddenError(f"your roles in {tenant} ({', '.join(sorted(r.value for r in held))}) do not allow this")
    return principal


def expert_may(route: str, scope: ExpertScope) -> bool:
    """Whether ``scope``'s grants open ``route`` at all (the objects are checked by the route)."""
    area, allowed = EXPERT_AREAS.get(route), ROUTE_ROLES.get(route, frozenset())
    if area is ExpertArea.PARTS:
        return not scope.parts(allowed).empty
    if area is ExpertArea.WHOLE_QUEUE:
        return scope.parts(allowed).whole
    if area is ExpertArea.DATASETS:
        return bool(scope.datasets(allowed))
    if area is ExpertArea.RUNS:
        return bool(scope.runs(allowed))
    return False


def may(route: str, principal: Principal | None, tenant: str | None) -> bool:
    """Whether the page should offer ``route`` (links and forms): the same rule as :func:`authorize`."""
    if principal is None or tenant is None or route not in ROUTE_ROLES:
        return False
    scope = principal.expert_in(tenant)
    if scope is not None:
        return expert_may(route, scope)
    return bool(principal.roles_in(tenant) & ROUTE_ROLES[route])


def parts_within(principal: Principal, tenant: str, route: str) -> PartScope | None:
    """The parts ``route`` may show this principal in ``tenant``: None for a member (all of them)."""
    scope = principal.expert_in(tenant)
    return None if scope is None else scope.parts(ROUTE_ROLES[route])


def datasets_within(principal: Principal, tenant: str, route: str) -> frozenset[str] | None:
    """The datasets ``route`` may show this principal in ``tenant``: None for a member (all of them)."""
    scope = principal.expert_in(tenant)
    return None if scope is None else scope.datasets(ROUTE_ROLES[route])


def check_dataset(principal: Principal, tenant: str, route: str, name: str) -> None:
    """404 for a dataset outside an expert's grants, exactly as for one that does not exist."""
    open_ = datasets_within(principal, tenant, route)
    if open_ is not None and name not in open_:
        raise NotFoundError(f"tenant {tenant!r} has no dataset {name!r}")


def runs_within(principal: Principal, tenant: str, route: str) -> frozenset[str] | None:
    """The training runs ``route`` may show this principal in ``tenant``: None for a member (all of them)."""
    scope = principal.expert_in(tenant)
    return None if scope is None else scope.runs(ROUTE_ROLES[route])


def check_run(principal: Principal, tenant: str, route: str, name: str) -> None:
    """404 for a run outside an expert's grants, exactly as for one that does not exist."""
    open_ = runs_within(principal, tenant, route)
    if open_ is not None and name not in open_:
        raise NotFoundError(f"tenant {tenant!r} has no training run {name!r}")
