"""``muflow serve``: the scan as an HTTP service and a web page (muflow_cli/service/)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from muflow_cli.cli import options as opt
from muflow_cli.service.config import ServeConfig

D = ServeConfig  # the defaults are the library's


def serve(
    model: Optional[Path] = opt.MODEL,
    host: str = typer.Option(D.host, "--host", help="Address to listen on. Anything but loopback needs --token or --no-auth."),
    port: int = typer.Option(D.port, "--port", min=1, max=65535, help="TCP port."),
    workers: int = typer.Option(D.workers, "--workers", min=1, help="Worker processes (replicas), each with its own model."),
    token: Optional[str] = typer.Option(None, "--token", envvar="MUFLOW_TOKEN", help="Bearer token every endpoint but /healthz requires (or the MUFLOW_TOKEN environment variable)."),
    no_auth: bool = typer.Option(D.no_auth, "--no-auth", help="Serve a non-loopback --host without a token (anyone who reaches it can use it)."),
    cors: Optional[str] = typer.Option(None, "--cors", help="Allow this browser origin (e.g. https://tools.example.org) to call the API; default: no CORS."),
    log_json: bool = typer.Option(D.log_json, "--log-json", help="Access log as JSON lines on stderr."),
    device: str = opt.DEVICE,
    engine: opt.EngineName = opt.ENGINE,
    batch_size: Optional[int] = opt.BATCH_SIZE,
    max_mb: float = typer.Option(D.max_mb, "--max-mb", min=0.001, help="Largest request body, in MB: larger ones get 413."),
    max_files: int = typer.Option(D.max_files, "--max-files", min=1, help="Most files per request: more get 400."),
    timeout: float = typer.Option(D.timeout_s, "--timeout", min=0.001, help="Seconds a request may take (upload, then work): 408 / 504 after."),
    queue: int = typer.Option(D.queue, "--queue", min=1, help="Requests in progress at once; more get 503 with Retry-After."),
    batch_wait_ms: float = typer.Option(D.batch_wait_ms, "--batch-wait-ms", min=0.0, help="How long the scorer waits for other requests' faces to fill a batch."),
) -> None:
    """Serve the scan over HTTP (POST /v1/scan, /v1/video) with a web page at /."""
    from muflow_cli.service.run import serve as run

    run(ServeConfig(host=host, port=port, workers=workers, token=token, no_auth=no_auth, cors=cors, log_json=log_json,
                    model=str(model) if model else None, device=device, engine=engine, batch_size=batch_size, max_mb=max_mb,
                    max_files=max_files, timeout_s=timeout, queue=queue, batch_wait_ms=batch_wait_ms))
