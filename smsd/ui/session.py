"""Sign-in for the console: session cookies, CSRF tokens, security headers.

The password is checked by the API's Authenticator, so the console has the
same users, the same scrypt hashes and the same brute-force back-off (every
guess costs a full scrypt, at most two run at once, an unknown name costs as
much as a known one).  A session is a random token in an ``HttpOnly``,
``SameSite=Strict`` cookie with an expiry; it lives in memory, so a restart
signs everybody out, which is the safe side.  Every POST under ``/ui/`` must
carry the session's CSRF token (form field or ``X-CSRF-Token`` header).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

from smsd.api.common import AUTH, SERVICES
from smsd.config import User
from smsd.ui.render import EMPTY, Html, h, hidden_csrf, notice, page, redirect

log = structlog.get_logger(__name__)

COOKIE = "smsd_session"
LOGIN_COOKIE = "smsd_login"
# A working day: an agent signs in once in the morning.
SESSION_TTL_S = 12 * 3600
# Sessions kept at most; past it the oldest go (each is ~200 bytes).
MAX_SESSIONS = 10_000

# No inline script or style anywhere: scripts and styles come from /ui/static.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclass
class Session:
    token: str
    username: str
    csrf: str
    expires: float  # time.time()


class Sessions:
    def __init__(self, ttl_s: float = SESSION_TTL_S) -> None:
        self._ttl = ttl_s
        self._by_token: dict[str, Session] = {}

    def create(self, username: str) -> Session:
        if len(self._by_token) >= MAX_SESSIONS:
            oldest = min(self._by_token.values(), key=lambda s: s.expires)
            self._by_token.pop(oldest.token, None)
        s = Session(secrets.token_urlsafe(32), username, secrets.token_urlsafe(32),
                    time.time() + self._ttl)
        self._by_token[s.token] = s
        return s

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        s = self._by_token.get(token)
        if s is None:
            return None
        if s.expires <= time.time():
            self._by_token.pop(token, None)
            return None
        return s

    def drop(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)


SESSIONS = web.AppKey("ui_sessions", Sessions)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Paths under /ui/ that need no session.
PUBLIC = ("/ui/login", "/ui/static/")


def _lookup(request: web.Request) -> tuple[User, Session] | None:
    sess = request.app[SESSIONS].get(request.cookies.get(COOKIE))
    if sess is None:
        return None
    user = request.app[SERVICES].directory.user_by_username(sess.username)
    return None if user is None else (user, sess)


def current(request: web.Request) -> tuple[User, Session]:
    """The signed-in user and session (two dict look-ups; the middleware checked them).

    Looked up again rather than kept on the request: aiohttp only types
    per-request storage from 3.14 on.
    """
    found = _lookup(request)
    if found is None:  # signed out by another tab between the check and here
        raise web.HTTPUnauthorized(text='{"error": "sign in first"}',
                                   content_type="application/json")
    return found


def _same_token(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


async def _form_token(request: web.Request) -> str | None:
    header = request.headers.get("X-CSRF-Token")
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            form = await request.post()
        except ValueError:  # a malformed body (multipart without a boundary) has no token
            return None
        value = form.get("csrf")
        return value if isinstance(value, str) else None
    return None


@web.middleware
async def console_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Session and CSRF for /ui/, strict headers on every console and doc answer."""
    path = request.path
    if not (path.startswith("/ui") or path.startswith("/api/v1/doc")):
        return await handler(request)
    response = await _guarded(request, handler, path)
    response.headers.update(SECURITY_HEADERS)
    return response


async def _guarded(request: web.Request, handler: Handler, path: str) -> web.StreamResponse:
    if not path.startswith("/ui") or path.startswith(PUBLIC):
        return await handler(request)
    found = _lookup(request)
    if found is None:
        if request.method == "GET" and request.headers.get("Accept") != "text/event-stream":
            return redirect("/ui/login")
        return web.json_response({"error": "sign in first"}, status=401)
    user, sess = found
    if request.method not in ("GET", "HEAD") and not _same_token(
            await _form_token(request), sess.csrf):
        log.info("ui.csrf_refused", path=path, user=user.username)
        return page("Refused", notice(
            "This form had no valid CSRF token; reload the page and try again.", "error"),
            status=403)
    return await handler(request)


def _login_form(token: str, message: Html = EMPTY) -> Html:
    return h(
        '$message<form class="card login" method="post" action="/ui/login">$csrf'
        '<label for="username">User name</label>'
        '<input id="username" name="username" autocomplete="username" required autofocus>'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" '
        'autocomplete="current-password" required>'
        '<button type="submit">Sign in</button></form>',
        message=message, csrf=hidden_csrf(token))


def _login_page(message: Html = EMPTY, status: int = 200) -> web.Response:
    """The form with a fresh pre-session CSRF token (double-submit cookie)."""
    token = secrets.token_urlsafe(32)
    resp = page("Sign in", _login_form(token, message), status=status)
    resp.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="Strict", path="/ui/login",
                    max_age=3600)
    return resp


async def login_get(request: web.Request) -> web.StreamResponse:
    return _login_page()


async def login_post(request: web.Request) -> web.StreamResponse:
    try:
        form = await request.post()
    except ValueError:  # a malformed body: nothing to read a user name from
        return _login_page(notice("The sign-in form was not readable.", "error"), 400)
    token = form.get("csrf")
    cookie = request.cookies.get(LOGIN_COOKIE)
    if not isinstance(token, str) or cookie is None or not _same_token(token, cookie):
        return _login_page(notice("The sign-in form expired; please try again.", "error"), 403)
    username, password = form.get("username"), form.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        return _login_page(notice("Enter a user name and a password.", "error"), 400)
    user = await request.app[AUTH].check(username.strip(), password)
    if user is None:
        log.info("ui.login_failed", username=username, peer=request.remote)
        return _login_page(notice("Wrong user name or password.", "error"), 401)
    sess = request.app[SESSIONS].create(user.username)
    log.info("ui.login", user=user.username, peer=request.remote)
    resp = redirect("/ui/conversations")
    resp.set_cookie(COOKIE, sess.token, httponly=True, samesite="Strict", path="/",
                    max_age=SESSION_TTL_S, secure=request.secure)
    resp.del_cookie(LOGIN_COOKIE, path="/ui/login")
    return resp


async def logout(request: web.Request) -> web.StreamResponse:
    user, sess = current(request)
    request.app[SESSIONS].drop(sess.token)
    log.info("ui.logout", user=user.username)
    resp = redirect("/ui/login")
    resp.del_cookie(COOKIE, path="/")
    return resp


def routes() -> list[web.RouteDef]:
    return [
        web.get("/ui/login", login_get, allow_head=False),
        web.post("/ui/login", login_post),
        web.post("/ui/logout", logout),
    ]
