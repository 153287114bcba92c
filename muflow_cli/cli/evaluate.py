"""``muflow eval``: a detector measured on labelled real and fake folders, clean and perturbed."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from muflow_cli.cli import options as opt
from muflow_cli.cli.common import domain_warning, fail, load_model, model_note
from muflow_cli.faces.options import FaceFinding
from muflow_cli.progress import stderr as err
from muflow_cli.progress import stdout as out

# Headline columns of the eval table that fit 80 columns; the rest show on wider terminals (all are in metrics.json).
EVAL_HEADLINE = ("perturbation", "fakes", "n real/fake", "AUC [95% CI]", "TPR@thr", "FPR@thr", "fakes score")
EVAL_WIDE = ("AP", "EER", "acc@thr", "FDP@thr", "coverage r/f", "TPR@1%", "TPR@5%")


@opt.face_finding
def evaluate(
    real: list[str] = typer.Option(..., "--real", help="Folder of real images, NAME=DIR or DIR (repeatable)."),
    fake: list[str] = typer.Option(..., "--fake", help="Folder of fake images, NAME=DIR or DIR (repeatable)."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for metrics.json, scores.csv and plots."),
    model: Optional[Path] = opt.MODEL,
    perturb: list[str] = typer.Option([], "--perturb", help="jpeg:Q, webp:Q, resize:F (down and up), scale:F (down), blur:SIGMA, noise:SIGMA or flip (repeatable); clean is always measured."),
    fpr: float = typer.Option(0.05, "--fpr", min=1e-6, max=0.999999, help="The model's operating point for accuracy and TPR at threshold."),
    fdr: Optional[float] = opt.FDR,
    tail: Optional[opt.Tail] = opt.TAIL,
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples for 95 % intervals (0: none)."),
    seed: int = typer.Option(0, "--seed"),
    device: str = opt.DEVICE,
    engine: opt.EngineName = opt.ENGINE,
    batch_size: Optional[int] = opt.BATCH_SIZE,
    provenance: bool = opt.PROVENANCE,
    parts: bool = typer.Option(False, "--parts", help="Also the score's parts per face (face-level Gaussian, residual, log-determinant: columns part_* in scores.csv) and each part's AUC (torch; slower)."),
    quiet: bool = opt.QUIET,
    faces: FaceFinding = FaceFinding(),
) -> None:
    """Measure a detector on labelled real and fake folders, clean and perturbed. Tunes nothing."""
    from muflow_cli.inputs.perturb import parse
    from muflow_cli.outputs.evaluation import write_outputs
    from muflow_cli.outputs.report import write_eval_index
    from muflow_cli.pipelines.evaluate import EvalConfig, evaluate, parse_source, provenance_by_source

    try:
        perts = [parse(p) for p in perturb]
    except ValueError as exc:
        fail(str(exc), 2)
    reals, fakes = [parse_source(r) for r in real], [parse_source(f) for f in fake]
    for name, path in reals + fakes:
        if not path.exists():
            fail(f"no such folder: {path} ({name})", 2)
    config = EvalConfig(fpr=fpr, tail=tail, bootstrap=bootstrap, seed=seed, batch_size=batch_size, faces=faces, provenance=provenance, parts=parts,
                        fdr=fdr)
    config.check()
    det = load_model(model, device, None, engine)
    scores, metrics = evaluate(reals, fakes, det, perts, config, progress=not quiet)
    by_source = provenance_by_source(scores) if provenance else []
    written = write_outputs(scores, metrics, det, config, output, by_source)
    notes = [det.calibration.describe(fpr, config.tail).replace("verdict: ", "Verdicts: ", 1) + ".", model_note(det, model)]
    written.append(write_eval_index(output, metrics, written, notes, by_source))
    if quiet:
        return
    wide = out.width >= 150
    rule = f"Benjamini-Hochberg at fdr {fdr:g} per perturbation" if fdr is not None else f"fpr {fpr:g}"
    t = Table(title=f"muflow eval ({det.calibration.resolve(config.tail)}-sided, {rule})")
    columns = EVAL_HEADLINE[:-1] + (EVAL_WIDE if wide else ()) + EVAL_HEADLINE[-1:]
    for col in columns:
        t.add_column(col, justify="left" if col in ("perturbation", "fakes") else "right")
    for m in metrics:
        t.add_row(*(_cells(m)[c] for c in columns))
    out.print(t)
    if parts:
        for m in metrics:
            aucs = ", ".join(f"{k.removeprefix('auc_part_')} {m[k]:.3f}" for k in m if k.startswith("auc_part_"))
            err.print(f"AUC of each part alone ({m['perturbation']}, {m['fake_source']}): {aucs or 'not measured'}", highlight=False)
    for row in by_source:
        kinds = ", ".join(f"{k} {n}" for k, n in row["files"].items())
        err.print(f"provenance of the {row['label']} files of {row['source']}: {kinds}", highlight=False, soft_wrap=True)
    for pert, rows in scores[(scores["label"] == "real") & (scores["status"] == "ok")].groupby("perturbation", sort=False):
        domain_warning(det, rows["p_value"].to_numpy(float), fpr, config.tail, model, f"the real faces ({pert}): ")
    err.print("AUC ranks faces by score (higher = fake); @thr uses the model's own verdicts. "
              f"{'' if wide else 'AP, EER, accuracy and TPR at FPR 1 %/5 % are in metrics.json. '}"
              f"wrote {len(written)} files to {output}", highlight=False)


def _cells(m: dict) -> dict[str, str]:
    """One metrics row as the table's cells."""

    def f(k: str) -> str:
        return f"{m[k]:.3f}" if k in m else "–"

    ci = m.get("ci95", {}).get("auc")
    auc = (f"{m['auc']:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")) if "auc" in m else "–"
    return {"perturbation": m["perturbation"], "fakes": m["fake_source"], "n real/fake": f"{m['n_real']}/{m['n_fake']}",
            "AUC [95% CI]": auc, "AP": f("ap"), "EER": f("eer"), "TPR@thr": f("tpr_at_threshold"),
            "FPR@thr": f("fpr_at_threshold"), "acc@thr": f("accuracy_at_threshold"), "FDP@thr": f("fdp_at_threshold"),
            "coverage r/f": f"{f('coverage_real')}/{f('coverage_fake')}", "TPR@1%": f("tpr_at_fpr_1"),
            "TPR@5%": f("tpr_at_fpr_5"), "fakes score": m["fakes_side"]}
