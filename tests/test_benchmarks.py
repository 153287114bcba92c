"""Benchmarks that cannot rot (issue #33): every script in benchmarks/ runs, as a user runs it.

Each script is run in a subprocess from the repository root with ``--smoke``: its own measuring code on tiny
inputs it makes itself (benchmarks/_smoke.py: t1.jpg, the astronaut, examples/' DCGAN faces), small sizes and
one repeat, in seconds. The scripts are found by glob: every ``benchmarks/*.py`` but the helper modules
(``_*.py``), so a new benchmark without a smoke mode fails here. ``--help`` must work too.

The subprocesses inherit the session's MUFLOW_CACHE_DIR (conftest.py's graph_cache_dir): the bundled model's
scoring graph is exported once, by whichever script needs it first, and read from that cache by the others.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
SMOKE_TIMEOUT_S = 600  # per script; on an idle 2-core machine each takes seconds to about a minute


def tail(text: str, n: int = 4000) -> str:
    return text[-n:]


def test_scripts_found():
    assert len(SCRIPTS) >= 20, SCRIPTS
    for name in SCRIPTS:
        assert 'if __name__ == "__main__":' in (BENCHMARKS / name).read_text(encoding="utf-8"), f"{name} is not a script: name a helper _{name}"


@pytest.fixture(scope="module")
def helps() -> dict[str, dict]:
    """``SCRIPT --help`` of every script, run as ``__main__`` in one child process (each in its own turn, the script's
    folder first on sys.path as ``python SCRIPT`` puts it): the exit code and output of each. One process, not one per
    script: the imports (torch, muflow) are paid once."""
    code = """
import contextlib, io, json, pathlib, runpy, sys, traceback

def run(path):
    buf, argv, syspath = io.StringIO(), sys.argv, list(sys.path)
    sys.argv = [path, "--help"]
    sys.path.insert(0, str(pathlib.Path(path).parent))
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            runpy.run_path(path, run_name="__main__")
        return 0, buf.getvalue()  # ran to its end without exiting: --help printed nothing and stopped nothing
    except SystemExit as exc:
        return (exc.code if isinstance(exc.code, int) else int(exc.code is not None)), buf.getvalue()
    except Exception:
        return 1, buf.getvalue() + traceback.format_exc()
    finally:
        sys.argv, sys.path[:] = argv, syspath

print(json.dumps({path: dict(zip(("rc", "output"), run(path))) for path in sys.argv[1:]}))
"""
    proc = subprocess.run([sys.executable, "-c", code, *(str(BENCHMARKS / s) for s in SCRIPTS)], cwd=ROOT, capture_output=True,
                          text=True, timeout=SMOKE_TIMEOUT_S)
    assert proc.returncode == 0, tail(proc.stdout + proc.stderr)
    return {Path(k).name: v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script, helps):
    got = helps[script]
    assert got["rc"] == 0, tail(got["output"])
    assert "--smoke" in got["output"], f"{script} --help lists no --smoke"


@pytest.fixture(scope="module")
def shared_smoke(tmp_path_factory) -> dict[str, str]:
    """The environment of the smoke runs: one shared folder for the in-domain smoke data (benchmarks/_smoke.py,
    SHARED_ENV), made by the first script that needs it and copied by the others."""
    return {**os.environ, "MUFLOW_SMOKE_SHARED": str(tmp_path_factory.mktemp("smoke-shared"))}


@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke(script, shared_smoke):
    try:
        proc = subprocess.run([sys.executable, str(BENCHMARKS / script), "--smoke"], cwd=ROOT, capture_output=True, text=True,
                              timeout=SMOKE_TIMEOUT_S, env=shared_smoke)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{script} --smoke ran past {SMOKE_TIMEOUT_S} s:\n{tail(str(exc.stdout or '') + str(exc.stderr or ''))}")
    assert proc.returncode == 0, f"{script} --smoke exited {proc.returncode}:\n{tail(proc.stdout)}\n--- stderr ---\n{tail(proc.stderr)}"
