"""How ``muflow serve`` runs: one settings object that the CLI builds, each worker process reads, and
the app's limits come from. Light on purpose: the CLI imports it to show ``--help``."""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass

from muflow_cli.errors import UsageError

ENV = "MUFLOW_SERVE_CONFIG"  # how uvicorn's worker processes get the settings (JSON)
LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """Only this machine can reach a server bound here (127.0.0.0/8, ::1, localhost)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ServeConfig:
    """Where the service listens, who may call it, what it scores with and how much it takes at once."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1  # uvicorn worker processes, each with its own model (one replica each)
    token: str | None = None  # bearer token on every endpoint but /healthz
    no_auth: bool = False  # the explicit choice to serve a non-loopback host without a token
    cors: str | None = None  # the one origin allowed to call from a browser; None: no CORS headers
    log_json: bool = False  # access log as JSON lines on stderr
    model: str | None = None  # bundle path; None: the bundled model
    device: str = "auto"
    engine: str = "auto"
    batch_size: int | None = None  # faces scored together; None: by device (device.default_batch_size)
    max_mb: float = 50.0  # upload bytes per request, in MB (10^6 bytes)
    max_files: int = 64  # files per request
    timeout_s: float = 60.0  # per request: the upload, then the work
    queue: int = 64  # requests admitted at once (read, detected or waiting to be scored); more: 503 + Retry-After
    batch_wait_ms: float = 5.0  # how long the scorer waits for faces of other requests to fill a batch

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 1_000_000)

    def check(self) -> None:
        if not is_loopback(self.host) and not self.token and not self.no_auth:
            raise UsageError(f"--host {self.host} can be reached from other machines: give --token TOKEN (bearer auth), "
                             "or --no-auth to serve without it")
        if self.token is not None and (not self.token or self.no_auth):
            raise UsageError("give either a non-empty --token or --no-auth, not both")
        if not 0 < self.port < 65536 or self.workers < 1 or self.max_files < 1 or self.queue < 1:
            raise UsageError("port must be 1-65535; workers, max files and queue at least 1")
        if self.max_mb <= 0 or self.timeout_s <= 0 or self.batch_wait_ms < 0 or (self.batch_size is not None and self.batch_size < 1):
            raise UsageError("max upload and timeout must be positive, batch wait at least 0, batch size at least 1")

    def to_env(self) -> dict[str, str]:
        return {ENV: json.dumps(asdict(self))}

    @classmethod
    def from_env(cls) -> ServeConfig:
        raw = os.environ.get(ENV)
        return cls(**json.loads(raw)) if raw else cls()
