"""The package's shape: dependencies point one way, and each rule lives in one place."""

import ast
from pathlib import Path

import muflow_cli

PACKAGE = Path(muflow_cli.__file__).parent


def _imports() -> dict[str, set[str]]:
    """Module -> the package modules it imports (anywhere in it, lazy imports included)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(node.module.split(".")[0])
                else:
                    deps.update(alias.name for alias in node.names)
        graph[path.stem] = deps
    return graph


def test_no_two_modules_import_each_other_directly_or_in_a_loop():
    graph = _imports()
    graph.pop("__init__")  # the package's lazy attribute loader, imported by no module
    loops = []

    def visit(node: str, path: list[str]) -> None:
        for dep in graph.get(node, ()):
            if dep in path:
                loops.append(path[path.index(dep):] + [dep])
            else:
                visit(dep, path + [dep])

    for module in graph:
        visit(module, [module])
    assert not loops, loops


def test_pipelines_do_not_import_their_consumers_or_the_cli():
    graph = _imports()
    for pipeline in ("fit", "scan", "video_scan", "evaluate"):
        assert not graph[pipeline] & {"report", "cli"}, pipeline


def _name(node: ast.AST) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def _where(match) -> list[str]:
    """Modules with a node for which ``match(node)`` holds (code only: strings and comments never match)."""
    return sorted({path.name for path in PACKAGE.glob("*.py") for node in ast.walk(ast.parse(path.read_text())) if match(node)})


def test_one_place_chooses_the_tail_and_one_turns_a_p_value_into_a_verdict():
    def tail_fallback(node):  # `x.tail or y.tail`, `tail or ...`
        return isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or) and any("tail" in _name(v) for v in node.values)

    def verdict_rule(node):  # `p <= fpr`, `p <= config.fpr`
        return isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.LtE) and _name(node.comparators[0]) == "fpr"

    assert _where(tail_fallback) == ["calibration.py"]
    assert _where(verdict_rule) == ["calibration.py"]


def test_the_scan_path_imports_no_torch():
    """What a CPU scan with a cached graph imports (the card, the model's loader, the ONNX engine, the scan,
    tables, the CLI) loads no torch, timm or normflows: they cost seconds of a one-image scan."""
    import os
    import subprocess
    import sys

    modules = ["card", "calibration", "files", "tables", "scan", "deepfake_model", "engine", "graphcache", "bundle",
               "device", "score", "faces", "cli"]
    code = "import sys\n" + "".join(f"import muflow_cli.{m}\n" for m in modules) + \
        "print(sorted(m for m in ('torch', 'timm', 'normflows', 'torchvision') if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "[]", out.stdout
