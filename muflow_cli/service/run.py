"""Run the app under uvicorn: one process, or ``workers`` processes each with its own model (replicas
on one machine, sharing the port). The settings travel to the worker processes in the environment."""

from __future__ import annotations

import os

from muflow_cli.service.config import ServeConfig

FACTORY = "muflow_cli.service.app:app_from_env"


def serve(config: ServeConfig) -> None:
    """Serve until interrupted (Ctrl-C, SIGTERM). ``config.check()`` first: a refused setting starts nothing."""
    import uvicorn

    config.check()
    os.environ.update(config.to_env())
    uvicorn.run(FACTORY, factory=True, host=config.host, port=config.port, workers=config.workers,
                access_log=not config.log_json, log_level="info", server_header=False,
                timeout_graceful_shutdown=int(config.timeout_s) + 5)
