from muflow_cli.cli.app import app

__all__ = ["app"]
