"""`muflow fit --preset paper`: the paper's configuration by name, with the user's own ResNet-50 weights.

The weights here are timm's random initialisation saved as safetensors: they test the plumbing (names, taps,
channels, the card), never what a model fitted with them would score."""

import json

import pytest
from typer.testing import CliRunner

from muflow_cli.cli.app import app
from muflow_cli.errors import ConfigError
from muflow_cli.nn.config import FlowConfig
from muflow_cli.pipelines.fit_config import PRESETS, FitConfig

runner = CliRunner()


@pytest.fixture(scope="module")
def random_resnet50(tmp_path_factory):
    import timm
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("weights") / "resnet50_random.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("resnet50", pretrained=False).state_dict().items()}, str(path))
    return path


def test_the_paper_preset_is_the_papers_numbers_and_given_options_win():
    config = PRESETS["paper"].config(backbone_weights="w.safetensors")
    assert (config.backbone, config.taps, config.k, config.averages, config.crop_size, config.flow.steps) == \
        ("resnet50", (1, 2, 3), 500, 1000, 256, 8)
    mine = PRESETS["paper"].config(k=50, flow=FlowConfig(steps=2), backbone_weights="w.safetensors")
    assert (mine.k, mine.averages, mine.flow.steps) == (50, 1000, 2)


def test_a_backbone_without_shipped_weights_is_refused_before_any_face_is_collected(tmp_path, real_folder):
    with pytest.raises(ConfigError, match="--backbone-weights"):
        FitConfig(backbone="resnet50").check()
    res = runner.invoke(app, ["fit", str(real_folder), "--preset", "paper", "-o", str(tmp_path / "m.muflow")])
    assert res.exit_code == 2 and "convert_pth.py" in res.output, res.output
    assert not (tmp_path / "m.muflow").exists()


def test_a_paper_preset_fit_with_random_weights_builds_resnet50_stages_1_to_3(tmp_path, real_folder, random_resnet50):
    out = tmp_path / "paper.muflow"
    # the preset's k = 500 and M = 1000 need FFHQ-sized folders: given options win (36 faces here)
    res = runner.invoke(app, ["fit", str(real_folder), "--preset", "paper", "--backbone-weights", str(random_resnet50),
                              "--k", "4", "--averages", "16", "--crop-size", "64", "--epochs", "1", "--flow-steps", "2",
                              "--batch-size", "8", "--group-by", "file", "--no-strata", "-q", "-o", str(out)])
    assert res.exit_code == 0, res.output
    info = runner.invoke(app, ["info", str(out), "--json"])
    assert info.exit_code == 0, info.output
    card = json.loads(info.stdout)
    assert card["backbone"]["name"] == "resnet50" and card["backbone"]["taps"] == [1, 2, 3]
    assert [layer["channels"] for layer in card["layers"]] == [256, 512, 1024]
    assert card["training"]["k"] == 4 and card["training"]["averages"] == 16 and card["crop"]["size"] == 64


def test_a_k_larger_than_the_fit_faces_is_a_fit_error_that_says_what_to_do():
    from muflow_cli.pipelines.fit_config import FitError, FitReport
    from muflow_cli.pipelines.fit_stages import plan_fit

    with pytest.raises(FitError, match="smaller --k"):
        plan_fit(PRESETS["paper"].config(backbone_weights="w.safetensors"), FitReport(fit_faces=36))
