"""The review app seen from another machine: sign in, keep the session, and call the app's routes for JSON.

:class:`ReviewClient` speaks to a running ``lineqa review serve`` over HTTPS (standard library only: urllib, ssl),
trusting the system's CAs or the plant's CA file (``--ca``, as ``curl --cacert``). It calls the very routes the
pages use, asking for their JSON variant (``?format=json`` and ``Accept: application/json``), so the app's
access table, an expert's grants and the audit trail apply unchanged; a POST carries the session's CSRF token
in the header the app's guard accepts. Redirects are never followed.

:class:`SessionFile` keeps one session per app URL (user, session cookie, CSRF token, CA file) in a JSON file
readable by its owner only (0600), by default ``$XDG_CONFIG_HOME/lineqa/review-session.json``.

Every refusal becomes a :class:`RemoteError` the command line prints in one line: 404 "not found (or not yours
to see)", 401 "log in again", the app's own message for bad input; never a traceback.
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from email.message import Message
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from lineqa.review.csrf import HEADER, LOGIN_COOKIE
from lineqa.review.errors import ReviewError

SESSION_COOKIE = "lineqa_session"  # the app's (lineqa.review.app.SESSION_COOKIE), without importing the app
SESSION_FILE = "review-session.json"
NOT_FOUND = "not found (or not yours to see)"


class RemoteError(ReviewError):
    """A request the app refused or that could not be made, in words a user can act on."""


def config_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/lineqa``, else ``~/.config/lineqa``."""
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "lineqa"


def normal_url(url: str) -> str:
    """``https://host[:port]`` (a path, query or trailing slash left out): the key a session is kept under."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise RemoteError(f"{url!r} is not the review app's address: give https://HOST[:PORT]")
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class RemoteSession:
    url: str
    user: str
    cookie: str
    csrf_token: str
    ca: str | None = None  # the CA file the app's certificate is checked against; None: the system's


class SessionFile:
    """Sessions per app URL, and which one commands use when no ``--url`` is given (the last signed in)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"current": None, "sessions": {}}
        except (OSError, ValueError) as exc:
            raise RemoteError(f"cannot read {self.path} ({exc}): delete it and log in again") from exc
        return data if isinstance(data, dict) and isinstance(data.get("sessions"), dict) else {"sessions": {}}

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=".review-session-")  # created 0600
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(data, out, indent=2)
            os.chmod(name, 0o600)
            os.replace(name, self.path)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise

    def get(self, url: str | None) -> RemoteSession:
        data = self._read()
        key = normal_url(url) if url else data.get("current")
        found = data["sessions"].get(key) if key else None
        if found is None:
            where = f"to {key}" if key else "anywhere"
            raise RemoteError(f"not logged in {where}: run 'lineqa review remote login URL --user NAME'")
        return RemoteSession(**found)

    def put(self, session: RemoteSession) -> None:
        data = self._read()
        data["sessions"][session.url] = asdict(session)
        data["current"] = session.url
        self._write(data)

    def remove(self, url: str) -> None:
        data = self._read()
        data["sessions"].pop(url, None)
        if data.get("current") == url:
            data["current"] = next(iter(data["sessions"]), None)
        self._write(data)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise RemoteError(f"the app answered {self.status} with something other than JSON") from exc

    def message(self) -> str:
        """The app's own words for a refusal (its JSON error), else empty."""
        try:
            found = json.loads(self.body)
        except ValueError:
            return ""
        return str(found.get("error", "")) if isinstance(found, dict) else ""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 303 itself is the answer (a sign-in sets its cookie on it)


def path_of(*segments: str) -> str:
    """A URL path of segments, each quoted (a tenant, record id or run name never adds a segment)."""
    return "/" + "/".join(quote(s, safe="") for s in segments)


class ReviewClient:
    """Requests to one review app, signed in as ``session`` (or not yet, for :meth:`login`)."""

    def __init__(self, url: str, ca: str | None = None, session: RemoteSession | None = None,
                 timeout_s: float = 30.0) -> None:  # fmt: skip
        self.url = normal_url(url)
        self.session = session
        self.timeout_s = timeout_s
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if self.url.startswith("https://"):
            try:
                context = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
            except (OSError, ssl.SSLError) as exc:
                raise RemoteError(f"cannot use the CA file {ca}: {exc}") from exc
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self._opener = urllib.request.build_opener(*handlers)

    @classmethod
    def of(cls, session: RemoteSession) -> ReviewClient:
        return cls(session.url, session.ca, session)

    def request(self, method: str, path: str, params: Mapping[str, str] | None = None,
                form: Mapping[str, str] | None = None, cookies: Mapping[str, str] | None = None,
                headers: Mapping[str, str] | None = None) -> Reply:  # fmt: skip
        """One request; any status comes back as a :class:`Reply` (only an unreachable app raises)."""
        query = f"?{urlencode(params)}" if params else ""
        sent = {"Accept": "application/json", "User-Agent": "lineqa-review-remote", **(headers or {})}
        jar = dict(cookies or {})
        if self.session is not None:
            jar[SESSION_COOKIE] = self.session.cookie
            if method not in ("GET", "HEAD"):
                sent[HEADER] = self.session.csrf_token
        if jar:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        data = urlencode(form or {}).encode() if method not in ("GET", "HEAD") else None
        if data is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(self.url + path + query, data=data, headers=sent, method=method)
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                return Reply(response.status, response.headers, response.read())
        except urllib.error.HTTPError as exc:  # a status the app answered with: the caller decides
            return Reply(exc.code, exc.headers, exc.read())
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise RemoteError(f"cannot trust {self.url}: {reason.verify_message}; give the plant's CA with "
                                  "--ca FILE when logging in") from exc  # fmt: skip
            raise RemoteError(f"cannot reach {self.url}: {reason}") from exc
        except (OSError, ssl.SSLError) as exc:
            raise RemoteError(f"cannot reach {self.url}: {exc}") from exc

    def checked(self, reply: Reply, what: str) -> Reply:
        """``reply`` if it is a success, else the refusal in words."""
        if 200 <= reply.status < 300:
            return reply
        said = reply.message()
        if reply.status == 404:
            raise RemoteError(f"{what}: {NOT_FOUND}")
        if reply.status == 401 or (reply.status == 303 and "/login" in reply.headers.get("location", "")):
            raise RemoteError(f"{what}: not signed in (the session ended or expired): log in again with "
                              f"'lineqa review remote login {self.url} --user NAME'")  # fmt: skip
        if reply.status == 403:
            raise RemoteError(f"{what}: not allowed" + (f" ({said})" if said else ""))
        if reply.status >= 500:
            request_id = reply.headers.get("X-Request-Id", "?")
            raise RemoteError(f"{what}: the review app failed (status {reply.status}, request id {request_id})")
        raise RemoteError(f"{what}: {said or f'refused with status {reply.status}'}")

    # -- sign in and out ----------------------------------------------------------------------------------

    def login(self, user: str, password: str, ca: str | None) -> RemoteSession:
        """Sign in with the login form's double-submit token; the new session with its CSRF token."""
        form_page = self.request("GET", "/login", headers={"Accept": "text/html"})
        token = _cookie(form_page, LOGIN_COOKIE)
        if form_page.status != 200 or token is None:
            raise RemoteError(f"{self.url} does not look like a lineqa review app (GET /login: {form_page.status})")
        signed = self.request("POST", "/login", form={"username": user, "password": password, "next": "/"},
                              cookies={LOGIN_COOKIE: token}, headers={HEADER: token})  # fmt: skip
        if signed.status == 401:
            raise RemoteError("wrong user name or password")
        cookie = _cookie(signed, SESSION_COOKIE)
        if signed.status != 303 or cookie is None:
            self.checked(signed, "log in")
            raise RemoteError(f"log in: the app answered {signed.status} without a session")
        self.session = RemoteSession(self.url, user, cookie, "", ca)
        me = self.get_json("/", what="who am I")
        self.session = RemoteSession(self.url, user, cookie, str(me["csrf_token"]), ca)
        return self.session

    def logout(self) -> None:
        reply = self.request("POST", "/logout")
        if reply.status not in (303, 401):  # 401: the session had ended already
            self.checked(reply, "log out")

    # -- the app's routes ---------------------------------------------------------------------------------

    def get_json(self, path: str, params: Mapping[str, str] | None = None, what: str | None = None) -> Any:
        return self.checked(self.request("GET", path, {**(params or {}), "format": "json"}), what or path).json()

    def get_bytes(self, path: str, params: Mapping[str, str] | None = None, what: str | None = None) -> Reply:
        return self.checked(self.request("GET", path, params, headers={"Accept": "*/*"}), what or path)

    def post_json(self, path: str, form: Mapping[str, str], what: str | None = None) -> Any:
        return self.checked(self.request("POST", path, {"format": "json"}, form=form), what or path).json()


def _cookie(reply: Reply, name: str) -> str | None:
    for header in reply.headers.get_all("Set-Cookie") or []:
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        if name in jar and jar[name].value:
            return jar[name].value
    return None
