"""Who may use which route: one table, read by the app's guard on every request (deny by default).

Every route of the app has a name. A name in :data:`ROUTE_ROLES` may be used by a signed-in user holding one
of its roles *in the tenant named by the URL*; a user holding no role there gets 404, exactly as for a
tenant that does not exist, so tenant names cannot be probed. Routes in :data:`ACCOUNT_ROUTES` need a
session but no tenant; :data:`PUBLIC_ROUTES` need nothing. A route in none of the three is refused, so a
new route is closed until it is added here (a test checks the app has no route outside these tables).
"""

from __future__ import annotations

from lineqa.review.auth import Principal, Role
from lineqa.review.errors import ForbiddenError, NotFoundError, NotSignedInError

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
    "audit": _QA,
    "users": _ADMIN,
    "change_user": _ADMIN,
}
ACCOUNT_ROUTES = frozenset({"home", "logout"})
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
        raise NotFoundError(f"no tenant {tenant!r}")
    if not held & allowed:
        raise ForbiddenError(f"your roles in {tenant} ({', '.join(sorted(r.value for r in held))}) do not allow this")
    return principal
