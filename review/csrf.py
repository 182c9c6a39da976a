"""CSRF protection: every state-changing request must carry a token an attacker's page cannot know.

Signed-in requests use the session's synchronizer token (in a hidden form field ``csrf_token`` or the
``X-CSRF-Token`` header). The login form, which has no session yet, uses a double-submit token: a random
value set as a cookie with the form and posted back in it. Comparisons are constant-time.
"""

from __future__ import annotations

import hmac
import secrets

from lineqa.review.errors import ForbiddenError

FORM_FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
LOGIN_COOKIE = "lineqa_login_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def new_token() -> str:
    return secrets.token_urlsafe(32)


def check_token(expected: str | None, submitted: str | None) -> None:
    """Raise :class:`ForbiddenError` unless ``submitted`` equals ``expected`` (both present)."""
    if not expected or not submitted or not hmac.compare_digest(expected.encode(), submitted.encode()):
        raise ForbiddenError("missing or invalid CSRF token: reload the page and try again")
