"""Issue #32: calibration matched to processing, the forward check, --fdr, and the inconclusive verdict."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import write_rgb
from PIL import Image
from typer.testing import CliRunner

from muflow_cli.cli import app
from muflow_cli.inputs.compression import Compression, jpeg_quality
from muflow_cli.inputs.images import read_image_record
from muflow_cli.model.card import CalibrationInfo, forward_text
from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.pipelines.calibrate import CalibrateConfig, calibrate
from muflow_cli.pipelines.scan import ScanConfig, scan
from muflow_cli.pipelines.verdicts import apply_fdr, judge
from muflow_cli.stats.calibration import Calibration
from muflow_cli.stats.conformal import bh_reject, rate_upper_bound
from muflow_cli.stats.drift import forward_bound, forward_rate
from muflow_cli.stats.strata import MIN_STRATUM_FACES, POOLED, Strata, code, code_of_name, face_stratum, name

runner = CliRunner()


@pytest.mark.parametrize("quality", [30, 50, 75, 90, 95])
def test_jpeg_quality_is_read_from_the_quantization_tables(astronaut, quality):
    ok, buf = cv2.imencode(".jpg", astronaut[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    comp = read_image_record(io.BytesIO(buf.tobytes())).compression
    assert comp.format == "JPEG" and comp.quality == quality and comp.subsampling == "4:2:0"
    pil = io.BytesIO()
    Image.fromarray(astronaut).save(pil, "JPEG", quality=quality)  # libjpeg through Pillow: the same tables
    assert read_image_record(io.BytesIO(pil.getvalue())).compression.quality == quality


def test_lossless_and_webp_files_say_what_they_are(astronaut):
    labels = {}
    for fmt, kw in (("PNG", {}), ("WEBP", {"quality": 80}), ("WEBP", {"lossless": True})):
        buf = io.BytesIO()
        Image.fromarray(astronaut).save(buf, fmt, **kw)
        labels[f"{fmt}{kw}"] = read_image_record(io.BytesIO(buf.getvalue())).compression.label
    assert list(labels.values()) == ["png", "webp lossy", "webp"]
    with pytest.raises(ValueError):
        jpeg_quality([1] * 10)


def test_strata_lookup_uses_its_own_cell_then_the_nearest_more_degraded_then_pooled():
    full, thin = MIN_STRATUM_FACES, MIN_STRATUM_FACES // 2
    strata = Strata.from_pairs(
        np.r_[np.full(full, code(0, 0)), np.full(full, code(1, 1)), np.full(thin, code(2, 2))],
        np.r_[np.zeros(full), np.ones(full), np.full(thin, 2.0)])
    assert strata.lookup(code(0, 0)) == code(0, 0)
    assert strata.lookup(code(1, 0)) == code(1, 1)  # its own cell is empty: the nearest at least as degraded
    assert strata.lookup(code(2, 1)) == POOLED  # only a thin cell covers it
    assert Strata.from_pairs(np.full(full, code(0, 1)), np.zeros(full)).lookup(code(2, 2)) is None  # nothing that hard
    assert name(code_of_name("q70-89/x2-4")) == "q70-89/x2-4"
    assert face_stratum(Compression("JPEG", True, 75.0), 2.5) == code(1, 1)
    assert face_stratum(Compression("PNG", False), 1.0) == code(0, 0)
    assert face_stratum(None, 5.0) == code(1, 2)  # unknown compression: lossy of unknown quality


def test_mondrian_p_values_keep_the_rate_in_every_stratum():
    """Reals processed harder score higher: pooled p-values flag them far above the rate, per-stratum ones do not."""
    rng = np.random.default_rng(0)
    shifts = {code(0, 0): 0.0, code(1, 0): 1.0, code(0, 1): 2.0}
    cal_codes = np.repeat(list(shifts), 400)
    cal = rng.normal(size=len(cal_codes)) + np.array([shifts[c] for c in cal_codes])
    model = Calibration(cal[cal_codes == code(0, 0)], "upper", Strata.from_pairs(cal_codes, cal))
    for c, shift in shifts.items():
        test = rng.normal(size=4000) + shift
        p, used = model.matched_p_values(test, [c] * len(test))
        assert set(used) == {c} and (p <= 0.05).mean() < 0.065
        if shift:
            assert (model.p_values(test) <= 0.05).mean() > 0.2  # what the pooled calibration would say


def test_old_models_have_one_pooled_stratum():
    cal = Calibration(np.arange(50.0), "two")
    p, used = cal.matched_p_values(np.array([10.0, 60.0]), [code(2, 2), code(0, 0)])
    np.testing.assert_array_equal(p, cal.p_values(np.array([10.0, 60.0])))
    assert set(used) == {POOLED}


def test_benjamini_hochberg_and_the_rate_bound():
    assert bh_reject(np.array([0.01, 0.04, 0.03, 0.5, np.nan, 0.02]), 0.05).tolist() == [True, True, True, False, False, True]
    assert not bh_reject(np.array([0.2, 0.3]), 0.05).any() and not bh_reject(np.zeros(0), 0.1).any()
    rng = np.random.default_rng(1)
    false_share = []
    for _ in range(200):  # 900 reals and 100 fakes: the share of reals among the flagged stays below q on average
        cal = rng.normal(size=300)
        scores = np.r_[rng.normal(size=900), rng.normal(4, 1, size=100)]
        flagged = bh_reject(Calibration(cal, "upper").p_values(scores), 0.1)
        false_share.append(flagged[:900].sum() / max(flagged.sum(), 1))
    assert np.mean(false_share) <= 0.1
    assert rate_upper_bound(245, 0.05) > 0.05 > rate_upper_bound(10_000, 0.05) - 0.01
    assert rate_upper_bound(20, 0.05) == 0.0  # 20 faces cannot flag at 0.05 two-sided
    cover = [np.mean(rng.normal(size=5000) > np.sort(rng.normal(size=99))[-5]) for _ in range(400)]
    assert np.mean(np.array(cover) <= rate_upper_bound(99, 0.05, "upper")) >= 0.93  # a 95 % bound, checked


def test_the_forward_check_sees_drift_that_the_calibration_cannot():
    rng = np.random.default_rng(2)
    groups, order = np.repeat([0, 1, 2], 60), np.tile(np.arange(60), 3)
    steady = rng.normal(size=180)
    drifting = steady + order / 20.0  # later frames score higher
    still, n = forward_rate(steady, groups, order, True, 0.05, "upper")
    moved, _ = forward_rate(drifting, groups, order, True, 0.05, "upper")
    assert n == 90 and still < 0.15 and moved > 0.3
    assert forward_rate(steady[:30], groups[:30], order[:30], True, 0.05, "two") is None  # 15 faces cannot flag at 0.05


def test_the_forward_check_is_stated_with_the_bound_its_faces_allow():
    assert forward_bound(0.0, 28) == pytest.approx(1 - 0.05 ** (1 / 28))  # 0 of 28: up to 10 %, no less
    assert forward_bound(0.0, 28) > forward_bound(0.0, 280) and forward_bound(0.159, 88) > 0.159
    covered = [forward_bound(np.mean(np.random.default_rng(i).random(60) < 0.1), 60) >= 0.1 for i in range(400)]
    assert np.mean(covered) >= 0.93  # a 95 % bound, checked
    text = forward_text(CalibrationInfo(forward_fpr=0.0, forward_faces=28))
    assert "about 0%" in text and "at most 10%" in text and "calibrate on recent reals" in text


def test_inconclusive_says_why():
    cal = Calibration(np.linspace(0, 1, 100), "upper", Strata.from_pairs(np.full(100, code(0, 0)), np.linspace(0, 1, 100)))
    judged = judge(cal, np.array([0.5, 0.5, 0.5, 0.985]), [Compression("PNG", False), Compression("JPEG", True, 40.0),
                                                          Compression("PNG", False), Compression("PNG", False)],
                   [1.0, 1.0, 1.0, 1.0], [100.0, 100.0, 10.0, 100.0], 0.05, min_face_px=24.0,
                   rescore=lambda at: np.full(len(at), 0.5))
    assert judged.verdict[0] == "real" and judged.stratum[0] == "q90+/x<=2"
    assert judged.verdict[1] == "inconclusive" and "processed like this one" in judged.reason[1]
    assert judged.verdict[2] == "inconclusive" and "smaller than any" in judged.reason[2]
    assert judged.verdict[3] == "inconclusive" and "flips when the face is re-saved at JPEG 90" in judged.reason[3]


def test_fdr_decides_over_the_run_and_leaves_inconclusive_alone():
    table = pd.DataFrame({"p_value": [0.001, 0.04, 0.2, 0.01, np.nan], "verdict": ["fake", "fake", "real", "inconclusive", None]})
    out = apply_fdr(table.copy(), 0.05)
    assert out["verdict"].tolist()[:4] == ["fake", "real", "real", "inconclusive"] and out["verdict"].isna().tolist()[4]


@pytest.fixture(scope="module")
def stratified(tmp_path_factory, small_model, real_folder, t1_rgb, astronaut):
    """The small model calibrated, with strata, on real_folder plus more cut and resized reals (>= 40 faces a copy)."""
    root = tmp_path_factory.mktemp("more_reals")
    for f in real_folder.rglob("*.*"):
        (root / f.name).write_bytes(f.read_bytes())
    for i, s in enumerate((0.75, 0.85, 1.05, 1.15)):
        img = cv2.resize(t1_rgb[10 * i:, 5 * i:], None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        write_rgb(root / f"t1_more_{i}.png", img if i % 2 else img[:, ::-1])
    model, report = calibrate([root], DeepfakeModel.load(small_model), CalibrateConfig(group_by="file"), progress=False)
    return model, report


def test_calibrate_builds_strata_that_survive_a_save(stratified, tmp_path):
    model, report = stratified
    assert report.faces >= MIN_STRATUM_FACES and report.strata and model.calibration.strata is not None
    assert model.card.calibration.strata == report.strata and model.card.calibration.strata_sources > 0
    assert sum(report.strata.values()) >= 5 * report.faces  # the originals and six processed copies, found again
    saved = DeepfakeModel.load(model.save(tmp_path / "s.muflow"))
    assert saved.calibration.strata.counts() == model.calibration.strata.counts()
    card = json.loads((tmp_path / "s.muflow" / "card.json").read_text())
    assert card["calibration"]["strata"] == report.strata
    assert any(k == "strata" for k, _ in saved.card.summary())


def test_a_resaved_and_a_halved_copy_get_their_strata_and_clear_verdicts_hold(stratified, tmp_path, t1_rgb):
    model, _ = stratified
    folder = tmp_path / "copies"
    write_rgb(folder / "original.png", t1_rgb)
    ok, buf = cv2.imencode(".jpg", t1_rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 75])
    (folder / "resaved.jpg").write_bytes(buf.tobytes())
    half = cv2.resize(t1_rgb, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    write_rgb(folder / "halved.png", half)
    df = scan([folder], model, ScanConfig(stability=False), progress=False)
    by = {f.split("/")[-1]: g for f, g in df.groupby(df["file"].astype(str))}
    assert set(by["resaved.jpg"]["compression"]) == {"jpeg 75"} and set(by["original.png"]["compression"]) == {"png"}
    # halving doubles how much alignment enlarges each face (one scale level on a 256-px model; this one is 128 px)
    assert np.median(by["halved.png"]["upscale"]) == pytest.approx(2 * np.median(by["original.png"]["upscale"]), rel=0.1)
    for _, row in df.iterrows():  # each face's p-value comes from the stratum its header and size say (or the fallback)
        comp = {"png": Compression("PNG", False), "jpeg 75": Compression("JPEG", True, 75.0)}[row["compression"]]
        wanted = model.calibration.strata.lookup(face_stratum(comp, row["upscale"]))
        assert row["stratum"] == name(wanted), (row["file"], row["stratum"], name(wanted))
    assert set(by["original.png"]["stratum"]) == {"q90+/x<=2"} and "q70-89" in by["resaved.jpg"]["stratum"].iloc[0]
    # A conformal p-value is valid over reals, not face by face: a face near the threshold in one copy may fall
    # either side of it (what `inconclusive` is for). No copy of a real face is flagged with p <= fpr / 2, and a face
    # away from the threshold (p > 2 fpr or <= fpr / 2 in every copy) keeps its verdict in every copy.
    copies = [by[n].set_index("face") for n in ("original.png", "resaved.jpg", "halved.png")]
    assert all((c["p_value"] > 0.025).all() for c in copies), [c["p_value"].tolist() for c in copies]
    clear = [f for f in copies[0].index if all(f in c.index and not 0.025 < c.at[f, "p_value"] <= 0.1 for c in copies)]
    assert len(clear) >= 4, [c["p_value"].tolist() for c in copies]  # the check bites: most faces are away from it
    for f in clear:
        assert {c.at[f, "verdict"] for c in copies} == {"real"}, (f, [c.at[f, "p_value"] for c in copies])


def test_scan_fdr_and_stability_through_the_cli(stratified, tmp_path, real_folder):
    model, _ = stratified
    path = model.save(tmp_path / "s.muflow")
    out = tmp_path / "fdr.csv"
    res = runner.invoke(app, ["scan", str(real_folder), "-m", str(path), "--fdr", "0.1", "--csv", str(out)])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out)
    assert set(df["verdict"].dropna()) <= {"real", "fake", "inconclusive"} and df["stratum"].notna().all()
    assert "would be flagged at fpr 0.05" in res.output and "--fdr 0.1" in res.output
    assert runner.invoke(app, ["scan", str(real_folder), "--fdr", "2"]).exit_code == 2


def test_eval_parts_sum_to_the_score_and_get_an_auc_each(tmp_path, small_model, t1_path):
    from muflow_cli.pipelines.evaluate import PART_COLUMNS, EvalConfig, evaluate

    examples = Path(__file__).resolve().parents[1] / "examples"
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    for p in examples.glob("dcgan_*.png"):
        (fakes / p.name).write_bytes(p.read_bytes())
    model = DeepfakeModel.load(small_model)
    scores, metrics = evaluate([("t1", t1_path)], [("dcgan", fakes)], model, [], EvalConfig(bootstrap=0, parts=True), progress=False)
    faces = scores[scores["status"] == "ok"]
    total = sum(faces[c].to_numpy(float) for c in PART_COLUMNS)
    np.testing.assert_allclose(total, faces["score"].to_numpy(float), atol=2e-4)
    assert all(f"auc_{c}" in metrics[0] for c in PART_COLUMNS)
    assert 0 <= metrics[0]["coverage_real"] <= 1 and 0 <= metrics[0]["accuracy_conclusive"] <= 1
