from pathlib import Path

import pytest
import yaml

from saltseg.config import load_config, save_config
from saltseg.errors import SaltsegError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_recipes_validate(path):
    config = load_config(path)
    assert config.name == path.stem
    assert config.model.name in {"unet", "frrn_a", "frrn_b", "frrn"}


def test_overrides_are_parsed_as_yaml():
    config = load_config(
        CONFIGS / "demo.yaml",
        [
            "optim.lr=0.05",
            "trainer.epochs=2",
            "data.extra_channels=[depth]",
            "model.encoder=resnet34",
        ],
    )
    assert config.optim.lr == 0.05
    assert config.trainer.epochs == 2
    assert config.data.extra_channels == ["depth"]
    assert config.model_kwargs()["encoder"] == "resnet34"
    assert config.model_kwargs()["in_chans"] == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=0.1", "unknown key 'optim.lrr'"),
        ("optim.lr=-1", "optim.lr"),
        ("optim.optimizer=adam", "optim.optimizer"),
        ("trainer.epochs=many", "trainer.epochs"),
        ("nonsense", "key=value"),
        ("data.extra_channels=[colour]", "data.extra_channels"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(SaltsegError, match=message):
        load_config(CONFIGS / "demo.yaml", [override])


def test_loss_stages_must_increase():
    with pytest.raises(SaltsegError, match="loss"):
        load_config(None, ["loss.stages=[{epoch: 3, terms: {bce: 1}}]"])


def test_file_errors(tmp_path):
    with pytest.raises(SaltsegError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    with pytest.raises(SaltsegError, match="invalid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(SaltsegError, match="mapping"):
        load_config(tmp_path / "list.yaml")


def test_save_round_trip(tmp_path):
    config = load_config(CONFIGS / "resnet34.yaml", ["trainer.epochs=3"])
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["trainer"]["epochs"] == 3


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_recipes_build_their_model(path):
    from saltseg.models import create_model

    config = load_config(path)
    model = create_model(config.model_kwargs(pretrained=False))
    assert model.config["in_chans"] == 1 + len(config.data.extra_channels)
    assert sum(p.numel() for p in model.parameters()) > 1e6


def test_tile_only_loss_window():
    config = load_config(CONFIGS / "resnet34-cpu.yaml", ["loss.tile_only=true"])
    assert config.loss_window() == (13, 101)  # 101 reflect-padded to 128: 13 above, 14 below
    assert load_config(CONFIGS / "resnet34-cpu.yaml").loss_window() is None
    with pytest.raises(SaltsegError, match="tile_only needs augment.geometry: pad"):
        load_config(
            CONFIGS / "resnet34-cpu.yaml", ["loss.tile_only=true", "augment.geometry=resize"]
        )


def test_idle_schedule_names_what_a_short_run_never_reaches():
    recipe = CONFIGS / "resnet34-cpu.yaml"
    assert load_config(recipe, ["trainer.epochs=4"]).idle_schedule() == []
    notes = load_config(recipe, ["trainer.epochs=2"]).idle_schedule()
    assert len(notes) == 2
    assert "loss stage from epoch 2 (bce, dice, lovasz) never runs" in notes[0]
    assert "data.balance_until 3" in notes[1]
    frozen = load_config(recipe, ["trainer.epochs=4", "optim.freeze_encoder_epochs=4"])
    assert frozen.idle_schedule() == [
        "optim.freeze_encoder_epochs 4 covers all 4 epoch(s): the encoder never trains"
    ]
