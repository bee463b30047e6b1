"""API keys: passed through to the services, which authenticate every call.

A REST client sends ``Authorization: Bearer mtw_…``. The dashboard signs in once with
the same key; the gateway keeps it in an HttpOnly, SameSite=Strict cookie (so page
scripts never read it, other sites never send it, and it is never in a URL) and puts
it in the ``authorization`` metadata of each call.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

KEY_COOKIE = "mtw_key"
PROJECT_COOKIE = "mtw_project"
ADMIN_COOKIE = "mtw_admin"
SESSION_SECONDS = 7 * 24 * 3600


def bearer_key(request: Request) -> str | None:
    """The caller's key: the Authorization header first, else the sign-in cookie."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.strip().partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""
    return request.cookies.get(KEY_COOKIE)


def call_metadata(request: Request, key: str | None = None) -> tuple[tuple[str, str], ...]:
    """gRPC metadata for a call made for this request (none without a key: the service
    then answers UNAUTHENTICATED, which becomes 401)."""
    key = key if key is not None else bearer_key(request)
    return (("authorization", f"Bearer {key}"),) if key else ()


def session_project(request: Request) -> str | None:
    return request.cookies.get(PROJECT_COOKIE) if request.cookies.get(KEY_COOKIE) else None


def session_is_admin(request: Request) -> bool:
    """Whether the signed-in key could read the admin API at sign-in (for what the
    dashboard shows; the services check each call themselves)."""
    return request.cookies.get(ADMIN_COOKIE) == "1" and bool(request.cookies.get(KEY_COOKIE))


def set_session(response: Response, key: str, project: str, secure: bool, *, admin: bool = False) -> None:
    cookies = ((KEY_COOKIE, key), (PROJECT_COOKIE, project), (ADMIN_COOKIE, "1" if admin else "0"))
    for name, value in cookies:
        response.set_cookie(name, value, max_age=SESSION_SECONDS, path="/", secure=secure,
                            httponly=True, samesite="strict")


def clear_session(response: Response, secure: bool) -> None:
    for name in (KEY_COOKIE, PROJECT_COOKIE, ADMIN_COOKIE):
        response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="strict")
