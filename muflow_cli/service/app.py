"""The FastAPI app of ``muflow serve``: endpoints, limits, auth, the access log and the page.

Every request that is refused is refused with a JSON body ``{"error": code, "detail": message}`` and the
right status: 401 (token), 400 (bad request or options), 413 (upload bytes), 408 (upload not received
in time), 504 (work not done in time), 503 + Retry-After (not ready yet, or the queue is full). A bad
image is not an error: it is a row with a status, as in the CLI.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from muflow_cli.errors import MuflowError
from muflow_cli.service.batcher import Busy
from muflow_cli.service.config import ServeConfig
from muflow_cli.service.metrics import Metrics
from muflow_cli.service.params import scan_query, video_query
from muflow_cli.service.scanner import Scanner, Upload
from muflow_cli.version import __version__

OPEN_PATHS = ("/healthz", "/", "/static/app.js", "/static/app.css")  # no token: liveness, and the page's files (no data in them)
STATIC = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
# The page's policy: its own script, style and API, pictures from data:/blob: URLs; nothing from elsewhere.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
RETRY_AFTER_S = "1"
log = logging.getLogger("muflow.access")


class ServiceError(Exception):
    def __init__(self, status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers or {}


def error_response(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def busy(detail: str) -> ServiceError:
    return ServiceError(503, "busy", detail, {"Retry-After": RETRY_AFTER_S})


class Guard:
    """Pure ASGI middleware: bearer token, the upload byte limit (as declared and as received), the access
    log, the request metrics. Pure ASGI so that a body is counted as it streams in, never held first."""

    def __init__(self, app: ASGIApp, config: ServeConfig, metrics: Metrics) -> None:
        self.app, self.config, self.metrics = app, config, metrics

    def _authorised(self, scope: Scope) -> bool:
        if not self.config.token or scope["path"] in OPEN_PATHS:
            return True
        headers = dict(scope["headers"])
        given = headers.get(b"authorization", b"").decode("latin-1")
        return hmac.compare_digest(given.encode(), f"Bearer {self.config.token}".encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500}
        received = {"bytes": 0}
        limit = self.config.max_bytes

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", []).append((b"x-content-type-options", b"nosniff"))
            await send(message)

        async def drain(message: Message) -> None:
            """Read the rest of a refused body and drop it (bounded by the timeout), so that the client, still
            sending, gets the 413 rather than a reset connection; memory stays flat."""
            deadline = time.monotonic() + self.config.timeout_s
            while message["type"] == "http.request" and message.get("more_body", False) and time.monotonic() < deadline:
                try:
                    message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.001))
                except asyncio.TimeoutError:
                    return
                received["bytes"] += len(message.get("body", b""))

        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                received["bytes"] += len(message.get("body", b""))
                if received["bytes"] > limit:
                    await drain(message)
                    raise ServiceError(413, "too_large", f"the upload is over the limit of {limit:,} bytes")
            return message

        try:
            if not self._authorised(scope):
                response = error_response(401, "unauthorised", "give the token: Authorization: Bearer TOKEN",
                                          {"WWW-Authenticate": "Bearer"})
                return await response(scope, receive, sending)
            declared = dict(scope["headers"]).get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                self.metrics.rejected.labels("too_large").inc()
                await drain({"type": "http.request", "more_body": True})
                response = error_response(413, "too_large", f"the upload ({int(declared):,} bytes) is over the limit of {limit:,} bytes",
                                          {"Connection": "close"})
                return await response(scope, receive, sending)
            await self.app(scope, receiving, sending)
        finally:
            elapsed = time.perf_counter() - start
            endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"
            self.metrics.requests.labels(endpoint, str(status["code"])).inc()
            self.metrics.latency.labels(endpoint).observe(elapsed)
            if self.config.log_json:
                client = scope.get("client") or ("", 0)
                log.info(json.dumps({"time": time.time(), "client": client[0], "method": scope["method"], "path": scope["path"],
                                     "status": status["code"], "ms": round(elapsed * 1000, 2), "bytes_in": received["bytes"]}))


ENDPOINTS = ("/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/v1/model", "/v1/scan", "/v1/video")


@dataclass
class State:
    scanner: Scanner | None = None
    admitted: int = 0
    failed: str | None = None  # why the model could not be loaded


def static_file(name: str) -> bytes:
    return (resources.files("muflow_cli.service") / "static" / name).read_bytes()


def create_app(config: ServeConfig) -> FastAPI:
    """The app for ``config``; the model loads (and warms) in the background: /readyz says when it is done."""
    state = State()
    metrics = Metrics()
    metrics.gauges(lambda: state.admitted, lambda: state.scanner.batcher.depth() if state.scanner else 0)

    def load() -> None:
        try:
            scanner = Scanner(config)
            scanner.on_batch = metrics.batch
            scanner.warm()
            state.scanner = scanner
        except MuflowError as exc:
            state.failed = str(exc)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        task = asyncio.get_running_loop().run_in_executor(None, load)
        yield
        await task
        if state.scanner is not None:
            state.scanner.close()

    app = FastAPI(title="muflow", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Find deepfake faces with µFlow: the scan's table over HTTP.")
    app.add_middleware(Guard, config=config, metrics=metrics)
    if config.cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=[config.cors], allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        metrics.rejected.labels(exc.error).inc()
        return error_response(exc.status, exc.error, exc.detail, exc.headers)

    @app.exception_handler(MuflowError)
    async def muflow_error(request: Request, exc: MuflowError) -> JSONResponse:  # a config's check(): the caller's options
        return error_response(400, "bad_options", str(exc))

    def scanner() -> Scanner:
        if state.scanner is None:
            if state.failed:
                raise ServiceError(500, "model_failed", f"the model could not be loaded: {state.failed}")
            raise busy("the model is loading: try again shortly")
        return state.scanner

    async def guarded(work: Awaitable[Any], deadline: float, status: int, error: str, detail: str) -> Any:
        try:
            return await asyncio.wait_for(work, max(deadline - time.monotonic(), 0.001))
        except asyncio.TimeoutError:
            raise ServiceError(status, error, detail) from None
        except Busy:
            raise busy("the scoring queue is full: try again shortly") from None

    async def uploads(request: Request, name: str | None) -> list[Upload]:
        """The request's files: multipart parts that are files, or the raw body as one file."""
        kind = request.headers.get("content-type", "")
        if kind.startswith("application/x-www-form-urlencoded"):
            raise ServiceError(400, "no_file", "a form without files: send multipart files (-F file=@photo.jpg) or a raw body")
        if kind.startswith("multipart/form-data"):
            try:
                form = await request.form(max_files=config.max_files, max_fields=config.max_files)
            except HTTPException as exc:
                raise ServiceError(400, "bad_upload", str(exc.detail)) from None
            files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
            got = [Upload((f.filename or f"upload-{i}")[:1000], await f.read()) for i, f in enumerate(files)]
            await form.close()
        else:
            got = [Upload(name or "upload", await request.body())]
        if not got:
            raise ServiceError(400, "no_file", "no file in the request: send multipart files (-F file=@photo.jpg) or a raw body")
        if len(got) > config.max_files:
            raise ServiceError(400, "too_many_files", f"{len(got)} files: at most {config.max_files} per request")
        return got

    class Admitted:
        """Count the request as queued while it is being worked on; refuse it when the queue is full."""

        def __enter__(self) -> None:
            if state.admitted >= config.queue:
                raise busy(f"{state.admitted} requests are in progress (the limit is {config.queue}): try again shortly")
            state.admitted += 1

        def __exit__(self, *exc: Any) -> None:
            state.admitted -= 1

    async def handle(request: Request, query: tuple, work: Callable[[Scanner, list[Upload], Any, dict], Awaitable[Any]]) -> Any:
        """What both scans do: check the options, admit the request, receive its files, then ``work`` within the time left."""
        deadline = time.monotonic() + config.timeout_s
        options, extra = query
        options.check()
        s = scanner()
        with Admitted():
            files = await guarded(uploads(request, extra["name"]), deadline, 408, "upload_timeout",
                                  f"the upload was not received within {config.timeout_s:g} s")
            return await guarded(work(s, files, options, extra), deadline, 504, "timeout", f"the work took longer than {config.timeout_s:g} s")

    async def scan_work(s: Scanner, files: list[Upload], options: Any, extra: dict) -> dict[str, Any]:
        result = await s.scan(files, options, extra["heatmap"], extra["crops"])
        metrics.scanned(result["files"])
        return {"columns": s.columns(), **result}

    async def video_work(s: Scanner, files: list[Upload], options: Any, extra: dict) -> dict[str, Any]:
        if len(files) != 1:
            raise ServiceError(400, "one_video", f"{len(files)} files: send one video per request")
        return await s.video(files[0], options)

    @app.post("/v1/scan", summary="Scan images: per file its status, per face the scan table's columns, the summary")
    async def scan(request: Request, query: tuple = Depends(scan_query)) -> JSONResponse:
        return JSONResponse(await handle(request, query, scan_work))

    @app.post("/v1/video", summary="Scan one video: per-frame and per-track tables of `muflow video`, a line per video")
    async def video(request: Request, query: tuple = Depends(video_query)) -> JSONResponse:
        return JSONResponse(await handle(request, query, video_work))

    @app.get("/v1/model", summary="The model card and the tensors' sha256 (what `muflow info --json` prints)")
    async def model() -> dict[str, Any]:
        return scanner().model_card()

    @app.get("/healthz", summary="The process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="The model is loaded and its graphs are warm")
    async def readyz() -> JSONResponse:
        ready = state.scanner is not None and state.scanner.ready
        return JSONResponse({"ready": ready, **({"error": state.failed} if state.failed else {})}, status_code=200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics of this process")
    async def prometheus() -> Response:
        return Response(metrics.text(), media_type=metrics.content_type)

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(static_file("index.html"), media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer"})

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in STATIC:
            raise ServiceError(404, "not_found", "no such file")
        return Response(static_file(name), media_type=STATIC[name], headers={"Content-Security-Policy": CSP})

    return app


def app_from_env() -> FastAPI:
    """uvicorn's factory in each worker process: the settings come in the environment (config.ENV)."""
    config = ServeConfig.from_env()
    if config.log_json:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return create_app(config)
