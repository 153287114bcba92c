"""The package's shape: folders are layers, imports point down, and each rule lives in one place."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import muflow_cli

PACKAGE = Path(muflow_cli.__file__).parent

# Lowest first. A module may import modules of its own layer or of a lower one, never of a higher one.
# "core" is the package's top-level modules (version, errors, choices, progress, weights): anyone may use them.
LAYERS = ("core", "inputs", "faces", "stats", "nn", "model", "pipelines", "outputs", "service", "cli")
# Where torch (or timm, normflows) may be imported at module level: training and the torch engine.
TORCH_AT_IMPORT = ("nn/", "model/engines/torch_engine.py", "pipelines/fit")


def _modules() -> dict[str, Path]:
    """Dotted module name (without the package) -> file, for every module of the package."""
    return {".".join(p.relative_to(PACKAGE).with_suffix("").parts): p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py"}


def _layer(module: str) -> str:
    head = module.split(".")[0]
    return head if head in LAYERS else "core"


def _imports(path: Path, top_level_only: bool = False) -> set[str]:
    """The modules ``path`` imports (absolute names), lazy imports included unless ``top_level_only``."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import (the package uses absolute imports)"
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def _package_imports() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        deps = {m.removeprefix("muflow_cli.") for m in _imports(path) if m.startswith("muflow_cli.")}
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def test_every_folder_is_a_known_layer():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(LAYERS) - {"core"}


def test_imports_point_down_the_layers():
    upward = []
    for module, deps in _package_imports().items():
        if module == "__init__":
            continue  # the public API: lazy re-exports of the layers
        for dep in deps:
            if LAYERS.index(_layer(dep)) > LAYERS.index(_layer(module)):
                upward.append(f"{module} -> {dep}")
    assert not upward, upward


def test_no_two_modules_import_each_other_directly_or_in_a_loop():
    graph = _package_imports()
    graph.pop("__init__")
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


def test_subpackage_inits_are_empty():
    """Importing a layer costs nothing: a scan that needs one module of a folder does not load the others."""
    for init in PACKAGE.rglob("__init__.py"):
        if init.parent in (PACKAGE, PACKAGE / "cli"):
            continue
        assert not init.read_text().strip(), init


def test_torch_is_imported_at_module_level_only_where_training_or_the_torch_engine_needs_it():
    heavy = ("torch", "timm", "normflows")
    where = sorted(str(path.relative_to(PACKAGE)) for path in _modules().values()
                   if any(m.split(".")[0] in heavy for m in _imports(path, top_level_only=True)))
    assert where and all(w.startswith(TORCH_AT_IMPORT) for w in where), where


def _name(node: ast.AST) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def _where(match) -> list[str]:
    """Modules with a node for which ``match(node)`` holds (code only: strings and comments never match)."""
    return sorted({str(path.relative_to(PACKAGE)) for path in _modules().values()
                   for node in ast.walk(ast.parse(path.read_text())) if match(node)})


def test_one_place_chooses_the_tail_and_one_turns_a_p_value_into_a_verdict():
    def tail_fallback(node):  # `x.tail or y.tail`, `tail or ...`
        return isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or) and any("tail" in _name(v) for v in node.values)

    def verdict_rule(node):  # `p <= fpr`, `p <= config.fpr`
        return isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.LtE) and _name(node.comparators[0]) == "fpr"

    assert _where(tail_fallback) == ["stats/calibration.py"]
    assert _where(verdict_rule) == ["stats/calibration.py"]


def test_the_scan_path_imports_no_torch():
    """What a CPU scan with a cached graph imports (the card, the model's loader, the ONNX engine, the scan,
    tables, the CLI) loads no torch, timm or normflows: they cost seconds of a one-image scan."""
    modules = ["model.card", "stats.calibration", "inputs.files", "pipelines.schema", "outputs.tables", "pipelines.scan",
               "model.deepfake_model", "model.engines.choose", "model.engines.onnx_engine", "model.engines.graph_cache",
               "model.bundle", "model.device", "stats.conformal", "faces.detect", "faces.stage", "cli"]
    code = "import sys\n" + "".join(f"import muflow_cli.{m}\n" for m in modules) + \
        "print(sorted(m for m in ('torch', 'timm', 'normflows', 'torchvision', 'onnx') if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_public_api_is_what_all_says_and_every_name_loads():
    assert sorted(muflow_cli.__all__) == sorted(["__version__", *muflow_cli._API])
    for name in muflow_cli.__all__:
        assert getattr(muflow_cli, name) is not None, name
