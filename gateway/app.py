"""The gateway's ASGI app: the REST API, its OpenAPI spec and docs, sign-in, the dashboard."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from gateway import auth
from gateway.errors import GatewayError
from gateway.openapi import build_spec
from gateway.proxy import Proxy, error_response
from gateway.rules import RouteTable
from gateway.settings import GatewaySettings
from services.common.names import valid_id

WEB_DIST = Path(__file__).parent / "web" / "dist"
API_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
# Dashboard pages (client-side routes) all serve the same document.
PAGES = ("/", "/signin", "/wizard", "/wizard/{rest:path}", "/jobs/{rest:path}", "/models/{rest:path}", "/admin")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every HTTP response (plain ASGI: no per-request task,
    and streamed responses stay streamed)."""

    def __init__(self, app) -> None:
        self.app = app
        self.extra = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                present = {k for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *(h for h in self.extra if h[0] not in present)]
            await send(message)

        return await self.app(scope, receive, send_with_headers)


def create_app(settings: GatewaySettings, endpoints: Mapping[str, str] | None = None,
               routes: RouteTable | None = None) -> FastAPI:
    """The app; ``endpoints`` (service short name → host:port) defaults to the environment's."""
    routes = routes or RouteTable.discover()
    proxy = Proxy(settings, routes, settings.endpoints() if endpoints is None else endpoints)
    spec = build_spec(routes)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        await proxy.close()

    # FastAPI's own schema and docs are off: the spec comes from the protos.
    app = FastAPI(title="MTW gateway", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.proxy = proxy

    app.add_middleware(SecurityHeaders)

    @app.api_route("/v1/{rest:path}", methods=API_METHODS, include_in_schema=False)
    async def api(request: Request) -> Response:
        return await proxy.handle(request)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        return JSONResponse(spec)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="MTW API",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.post("/auth/sign-in", include_in_schema=False)
    async def sign_in(request: Request) -> Response:
        """Checks the key on the project (a one-row list call) and keeps it in the cookie."""
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return error_response(GatewayError.invalid("send {\"project\": …, \"api_key\": …}"))
        project, key = str(body.get("project", "")).strip(), str(body.get("api_key", "")).strip()
        if not valid_id(project):
            return error_response(GatewayError.invalid("the project id is not valid"))
        check = await proxy.call("GET", f"/v1/projects/{project}/datasets", [("page_size", "1")], key)
        if isinstance(check, BaseException):
            return error_response(check)
        # Whether the key may read the admin API, so the dashboard offers the admin page
        # only to those who can use it (the API itself checks every call).
        admin = not isinstance(await proxy.call("GET", "/v1/rolloutConfig", [], key), BaseException)
        response = JSONResponse({"project": project, "admin": admin})
        auth.set_session(response, key, project, settings.cookie_secure, admin=admin)
        return response

    @app.post("/auth/sign-out", include_in_schema=False)
    async def sign_out() -> Response:
        response = JSONResponse({})
        auth.clear_session(response, settings.cookie_secure)
        return response

    @app.get("/auth/session", include_in_schema=False)
    async def session(request: Request) -> Response:
        project = auth.session_project(request)
        if project is None:
            return JSONResponse({"signed_in": False})
        return JSONResponse({"signed_in": True, "project": project, "admin": auth.session_is_admin(request),
                             "wizard_experiment": settings.wizard_experiment})

    if WEB_DIST.is_dir():
        app.mount("/static", StaticFiles(directory=WEB_DIST), name="static")

    async def page() -> Response:
        index = WEB_DIST / "index.html"
        if not index.exists():
            return HTMLResponse("<h1>The dashboard is not built</h1><p>Run <code>make install</code>.</p>",
                                status_code=503)
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    for path in PAGES:
        app.add_api_route(path, page, methods=["GET"], include_in_schema=False)
    return app
