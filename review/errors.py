"""Errors of the review app. Each maps to one HTTP status in one table (:data:`HTTP_STATUS`), so a route
raises what went wrong and never builds a response for an error itself."""

from __future__ import annotations


class ReviewError(Exception):
    """Root of the review app's user-facing errors."""


class NotFoundError(ReviewError):
    """No such object for this tenant; also what another tenant's object looks like (never 403)."""


class ForbiddenError(ReviewError):
    """The signed-in user's roles in this tenant do not allow the route, or the CSRF token is wrong."""


class NotSignedInError(ReviewError):
    """No valid session: pages redirect to the login form."""


class BadInputError(ReviewError):
    """A form or query value that cannot be used, with what was wrong; ``field`` names the parameter."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TooManyAttemptsError(ReviewError):
    """Too many failed sign-ins for one user name: wait before trying again."""


HTTP_STATUS: dict[type[ReviewError], int] = {
    NotFoundError: 404,
    ForbiddenError: 403,
    NotSignedInError: 401,
    BadInputError: 400,
    TooManyAttemptsError: 429,
}


TITLES: dict[int, str] = {
    400: "That input cannot be used",
    401: "Sign in first",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    422: "That input cannot be used",
    429: "Too many attempts",
}


def title(status: int) -> str:
    """The error page's heading: what kind of problem it is, in the user's words."""
    return TITLES.get(status, "Something went wrong" if status >= 500 else "That request cannot be served")


def http_status(exc: ReviewError) -> int:
    """The status of the most specific class in :data:`HTTP_STATUS` (500 for an unmapped one)."""
    for kind in type(exc).__mro__:
        if kind in HTTP_STATUS:
            return HTTP_STATUS[kind]
    return 500
