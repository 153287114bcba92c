"""muflow: find deepfake faces with µFlow, a one-class detector fitted on real faces only.

The Python API (what the ``muflow`` command calls)::

    import muflow_cli as mf

    det = mf.DeepfakeModel.load()                         # the bundled demonstration model
    table = mf.scan(["photos/"], det, mf.ScanConfig(fpr=0.05))
    model, report = mf.fit(["reals/"], mf.FitConfig())     # fit on your own real faces

Names load on first use, so ``import muflow_cli`` stays cheap (torch loads only when a model needs it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from muflow_cli.version import __version__

# name -> module that defines it
_API = {
    "DeepfakeModel": "muflow_cli.model.deepfake_model",
    "FaceFinding": "muflow_cli.faces.options",
    "ScanConfig": "muflow_cli.pipelines.scan",
    "scan": "muflow_cli.pipelines.scan",
    "FitConfig": "muflow_cli.pipelines.fit",
    "fit": "muflow_cli.pipelines.fit",
    "VideoConfig": "muflow_cli.pipelines.video_scan",
    "scan_videos": "muflow_cli.pipelines.video_scan",
    "CalibrateConfig": "muflow_cli.pipelines.calibrate",
    "calibrate": "muflow_cli.pipelines.calibrate",
    "EvalConfig": "muflow_cli.pipelines.evaluate",
    "evaluate": "muflow_cli.pipelines.evaluate",
    "write_table": "muflow_cli.outputs.tables",
    "read_provenance": "muflow_cli.inputs.provenance",
    "Provenance": "muflow_cli.inputs.provenance",
    "MuflowError": "muflow_cli.errors",
}
__all__ = [
    "CalibrateConfig", "DeepfakeModel", "EvalConfig", "FaceFinding", "FitConfig", "MuflowError", "Provenance", "ScanConfig",
    "VideoConfig", "__version__", "calibrate", "evaluate", "fit", "read_provenance", "scan", "scan_videos", "write_table",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time the names load lazily below
    from muflow_cli.errors import MuflowError
    from muflow_cli.faces.options import FaceFinding
    from muflow_cli.inputs.provenance import Provenance, read_provenance
    from muflow_cli.model.deepfake_model import DeepfakeModel
    from muflow_cli.outputs.tables import write_table
    from muflow_cli.pipelines.calibrate import CalibrateConfig, calibrate
    from muflow_cli.pipelines.evaluate import EvalConfig, evaluate
    from muflow_cli.pipelines.fit import FitConfig, fit
    from muflow_cli.pipelines.scan import ScanConfig, scan
    from muflow_cli.pipelines.video_scan import VideoConfig, scan_videos


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
