"""The one place muflow builds ONNX Runtime sessions: the face detector's and the scoring graph's.

ONNX Runtime is imported on first use, not with this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnxruntime as ort

# graph_optimization_level by name; "all" is also ONNX Runtime's default.
OPTIMIZATION = {"off": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


def session(
    model: str | bytes,
    threads: int = 0,
    spinning: bool = True,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    optimization: str = "all",
) -> ort.InferenceSession:
    """An inference session for ``model`` (a file path or the graph's bytes).

    ``threads``: intra-op threads (0: ONNX Runtime's default, one per physical core). ``spinning``:
    whether idle pool threads spin (ONNX Runtime's default) or sleep. ``optimization``: a key of
    :data:`OPTIMIZATION`. Warnings are not logged (severity 3: errors only)."""
    import onnxruntime as ort

    if optimization not in OPTIMIZATION:
        raise ValueError(f"unknown graph optimization {optimization!r}; choose one of {', '.join(OPTIMIZATION)}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION[optimization])
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(model, sess_options=opts, providers=list(providers))
