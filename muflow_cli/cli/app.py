"""The ``muflow`` command: parses arguments, calls the Python API, renders results.

One module per command (cli/scan.py, fit.py, video.py, evaluate.py, calibrate.py, info.py); options
that several take are declared once (cli/options.py); every rule lives in the library (a config's
``check()``); every error is a ``MuflowError`` caught in one place (common.command) and turned into a
message and an exit status.
"""

from __future__ import annotations

import typer

from muflow_cli.cli.calibrate import calibrate
from muflow_cli.cli.common import command
from muflow_cli.cli.evaluate import evaluate
from muflow_cli.cli.fit import fit
from muflow_cli.cli.info import info, weights_list, weights_verify
from muflow_cli.cli.scan import scan
from muflow_cli.cli.serve import serve
from muflow_cli.cli.video import video
from muflow_cli.progress import stdout as out
from muflow_cli.version import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Find deepfake faces with µFlow (one-class, fitted on real faces).")
weights_app = typer.Typer(no_args_is_help=True, help="Bundled model files: licences and integrity.")
app.add_typer(weights_app, name="weights")


def _version(value: bool) -> None:
    if value:
        out.print(f"muflow {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Find deepfake faces with µFlow (one-class, fitted on real faces)."""


for name, fn in (("scan", scan), ("fit", fit), ("video", video), ("eval", evaluate), ("calibrate", calibrate), ("info", info), ("serve", serve)):
    app.command(name)(command(fn))
weights_app.command("list")(command(weights_list))
weights_app.command("verify")(weights_verify)
