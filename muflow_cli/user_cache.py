"""muflow's user cache folder, shared by everything it keeps between runs: the exported scoring graphs
(model/engines/graph_cache.py) and the face detectors' prepared graphs (faces/detector_graphs.py).

Where: ``MUFLOW_CACHE_DIR`` if set, else the user's cache folder (platformdirs). ``MUFLOW_GRAPH_CACHE=0``
switches the caches off: every graph is made in memory, every run.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_DIR_ENV = "MUFLOW_CACHE_DIR"
SWITCH_ENV = "MUFLOW_GRAPH_CACHE"


def cache_root() -> Path:
    """muflow's cache folder: ``$MUFLOW_CACHE_DIR`` or the platform's user cache folder."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("muflow"))


def cache_enabled() -> bool:
    """False when ``MUFLOW_GRAPH_CACHE`` is 0, false, no or off."""
    return os.environ.get(SWITCH_ENV, "1").strip().lower() not in ("0", "false", "no", "off")
