"""`create_app(settings)`: the OpenAI-compatible ASGI app, to run with uvicorn or to mount
in a service of your own."""

from __future__ import annotations

import hmac
import html
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from allama.server.errors import APIError, error_response, install_error_handlers
from allama.server.metrics import HttpCounters
from allama.server.model_registry import LoadProgress, ModelRegistry
from allama.server.routes import router
from allama.server.settings import ConfigFileSettings, ModelSettings, ServerSettings, Settings

# Paths that answer without an API key (load balancers and probes call them), and with
# the web chat page on, the page and its files (they hold no data; its requests carry the key).
OPEN_PATHS = {"/health"}
WEB_UI_PATHS = {"/"}
WEB_UI_PREFIX = "/static/"
STATIC_DIR = Path(__file__).parent / "static"


def create_app(settings: Settings | ConfigFileSettings | None = None, *,
               server_settings: ServerSettings | None = None,
               model_settings: Sequence[ModelSettings] | None = None,
               load_progress: LoadProgress | None = None) -> FastAPI:
    """The app serving `settings`' model (a `Settings`) or models (a `ConfigFileSettings`);
    or give `server_settings` and `model_settings` separately. Models load in the
    background when the app starts (or at its first request when mounted in another app,
    whose lifespan Starlette does not pass on); /health says "loading" until then.

    With no arguments (`uvicorn --factory allama.server.app:create_app`), as llama-cpp-python's:
    the config file named by the CONFIG_FILE environment variable, else `Settings()` from the
    environment (MODEL=model.gguf, N_CTX=4096, ...). `load_progress(alias)` gives a model's
    loading progress callback (`allama serve` draws a bar on stderr)."""
    if settings is None and server_settings is None and model_settings is None:
        config_file = os.environ.get("CONFIG_FILE")
        settings = ConfigFileSettings.from_file(config_file) if config_file else Settings()
    if isinstance(settings, ConfigFileSettings):
        server_settings = server_settings or ServerSettings.model_validate(settings.model_dump(exclude={"models"}))
        model_settings = model_settings or settings.models
    elif isinstance(settings, Settings):
        server_settings = server_settings or ServerSettings.model_validate(settings.model_dump())
        model_settings = model_settings or [ModelSettings.model_validate(settings.model_dump())]
    server_settings = server_settings or ServerSettings()
    registry = ModelRegistry(list(model_settings or []), max_loaded_models=server_settings.max_loaded_models,
                             load_progress=load_progress)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry.start_loading()
        try:
            yield
        finally:
            await registry.aclose()

    app = FastAPI(title="allama", version=_version(), root_path=server_settings.root_path, lifespan=lifespan,
                  description="An OpenAI-compatible API over llama.cpp, with continuous batching.")
    app.state.registry = registry
    app.state.server_settings = server_settings
    app.state.http = HttpCounters()
    app.state.started = int(time.time())
    install_error_handlers(app)
    app.include_router(router)
    if server_settings.web_ui:
        _add_web_ui(app)
    app.add_middleware(CORSMiddleware, allow_origins=server_settings.cors_origins, allow_credentials=True,
                       allow_methods=["*"], allow_headers=["*"])
    app.add_middleware(_Gate, settings=server_settings, registry=registry, http=app.state.http)
    return app


def _add_web_ui(app: FastAPI) -> None:
    """The chat page at / and its script and style under /static/ (docs/web-chat.md)."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    async def chat_page(request: Request) -> HTMLResponse:
        # <base> makes the page's relative URLs (static/..., v1/...) right under a root path or a mount
        base = html.escape(request.scope.get("root_path", "").rstrip("/") + "/", quote=True)
        return HTMLResponse(page.replace('<base href="/">', f'<base href="{base}">', 1), headers={
            "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                                       "base-uri 'self'; form-action 'self'; object-src 'none'"})


def _route_path(scope: Scope) -> str:
    """The path within this app: without the root path a mount or a proxy prefix adds
    (as Starlette's routing reads it)."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root):len(root) + 1] in ("/", ""):
        return path[len(root):] or "/"
    return path


class _Gate:
    """Per request: the API key (401), the body size limit (413), starting the models'
    loading, and the request counters for /metrics."""

    def __init__(self, app: ASGIApp, settings: ServerSettings, registry: ModelRegistry, http: HttpCounters) -> None:
        self.app = app
        self.settings = settings
        self.registry = registry
        self.http = http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.registry.start_loading()
        path = scope.get("path", "")
        status = [500]

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        self.http.in_flight += 1
        try:
            error = self._refusal(scope)
            if error is None:
                receive, error = await self._read_body(scope, receive)
            if error is not None:
                await error_response(error)(scope, receive, counted_send)
            else:
                await self.app(scope, receive, counted_send)
        finally:
            self.http.in_flight -= 1
            self.http.requests[(path if path in _KNOWN_PATHS else "other", status[0])] += 1

    def _refusal(self, scope: Scope) -> APIError | None:
        key = self.settings.api_key
        if key and not self._open(scope) and scope.get("method") != "OPTIONS":
            headers = dict(scope.get("headers") or [])
            given = headers.get(b"authorization", b"").decode("latin-1")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
                return APIError(401, "Incorrect API key provided.", code="invalid_api_key",
                                headers={"WWW-Authenticate": "Bearer"})
        return None

    def _open(self, scope: Scope) -> bool:
        path = _route_path(scope)
        if path in OPEN_PATHS:
            return True
        return self.settings.web_ui and (path in WEB_UI_PATHS or path.startswith(WEB_UI_PREFIX))

    async def _read_body(self, scope: Scope, receive: Receive) -> tuple[Receive, APIError | None]:
        """Reads the whole body (refusing one over the limit), then replays it to the app;
        later messages (the client's disconnect) come from the connection as usual."""
        limit = self.settings.max_request_bytes
        too_big = APIError(413, f"the request body is larger than {limit} bytes", code="request_too_large")
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return receive, too_big
        if scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            return receive, None
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return receive, APIError(400, "the client closed the connection")
            size += len(message.get("body", b""))
            if size > limit:
                return receive, too_big
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(parts), "more_body": False}
            return await receive()

        return replay, None


_KNOWN_PATHS = {"/v1/completions", "/v1/engines/copilot-codex/completions", "/v1/chat/completions", "/v1/embeddings", "/v1/rerank", "/rerank", "/v1/models",
                "/extras/tokenize", "/extras/tokenize/count", "/extras/detokenize", "/health", "/metrics"}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("allama")
    except Exception:  # noqa: BLE001 - running from a source tree
        return "0"

