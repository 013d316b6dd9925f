"""Self-supervised pretraining: the methods, the file it writes and loading it into a U-Net."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import segyio
import torch
from typer.testing import CliRunner

from saltseg.cli import app
from saltseg.config import load_config
from saltseg.data.datamodule import FoldDataModule
from saltseg.data.tgs import load_dataset
from saltseg.data.transforms import demo_tiles
from saltseg.errors import SaltsegError
from saltseg.models import create_model
from saltseg.models.pretrained import describe_init, init_text
from saltseg.pretrain import build_method, list_methods, pretrain
from saltseg.pretrain.sections import section_windows
from saltseg.pretrain.views import ViewSettings, make_views, patch_mask
from saltseg.report.run import ancestry
from saltseg.runs import Run
from saltseg.training.kfold import train_kfold
from saltseg.training.module import SaltModule
from saltseg.volume.scaling import apply_clip
from tests.helpers import CONFIGS, TINY, tiny_config

FAST = ["model.encoder=mobilenetv3_small_050", "trainer.limit_val_batches=1"]
"""A U-Net on a small MobileNetV3: a pretraining step takes a fraction of a second."""


def fast_config(*extra: str):
    return tiny_config(*FAST, *extra)


@pytest.fixture(scope="module")
def mim_file(tiny_data, tmp_path_factory):
    """A mim pretraining file of the fast recipe, two steps on the tiny data."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("pretrain") / "mim.pt"
    pretrain(fast_config(), tiny_data, "mim", 1, out, batch_size=4, max_steps=2, progress=False)
    return out


def _assert_loaded(model, state: dict, part: str) -> None:
    own = getattr(model, part).state_dict()
    assert set(own) == set(state)
    for key, value in state.items():
        assert torch.equal(own[key], value), key


@pytest.mark.parametrize("method", ["mim", "vicregl", "simclr"])
def test_each_method_writes_weights_a_unet_loads(tiny_data, tmp_path, method):
    torch.set_num_threads(1)
    out = tmp_path / f"{method}.pt"
    summary = pretrain(
        fast_config(), tiny_data, method, 1, out, batch_size=4, max_steps=2, progress=False
    )
    assert summary["file"] == str(out) and summary["steps"] == 2
    data = torch.load(out, weights_only=True)
    assert data["format"] == "saltseg-pretrain" and data["method"] == method
    assert data["images"] == 26 and data["data"] == [{"folder": str(tiny_data), "images": 26}]
    assert data["model"]["encoder"] == "mobilenetv3_small_050" and data["model"]["in_chans"] == 1
    assert data["epochs"] == 1 and ("decoder" in data) == (method == "mim")

    model = create_model(fast_config(f"model.pretrained={out}").model_kwargs())
    _assert_loaded(model, data["encoder"], "encoder")
    if method == "mim":
        _assert_loaded(model, data["decoder"], "decoder")
        assert model.pretrained_parts == ("encoder", "decoder")
    else:
        assert model.pretrained_parts == ("encoder",)


@pytest.mark.parametrize("method", ["mim", "simclr"])
def test_loss_goes_down_on_a_fixed_batch(method):
    torch.set_num_threads(1)
    built = build_method(fast_config(), method, seed=0, device="cpu")
    images = torch.from_numpy(demo_tiles(4)[0])[:, None]
    depths = torch.full((4,), float("nan"))
    optimizer = torch.optim.AdamW(built.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        built.generator.manual_seed(0)  # the same views and masks at every step
        loss = built.loss(images, depths)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])


def test_views_keep_depth_direction_and_mask_share():
    generator = torch.Generator().manual_seed(0)
    rows = torch.linspace(0, 1, 101)[None, None, :, None].expand(6, 1, 101, 101).contiguous()
    plain = ViewSettings(size=64, photometric_p=0, gamma_p=0, noise_p=0)
    views = make_views(rows, plain, generator)
    assert views.images.shape == (6, 1, 64, 64)
    column = views.images[:, 0, :, 32]
    assert (column[:, 1:] >= column[:, :-1] - 1e-5).all()  # still brighter downwards: no vflip
    grid = views.grid(4, 4)
    assert grid.shape == (6, 4, 4, 2)
    x1, y1, x2, y2 = views.boxes.unbind(1)
    inside = (grid[..., 0] >= x1[:, None, None]) & (grid[..., 0] <= x2[:, None, None])
    assert inside.all() and (grid[..., 1] <= y2[:, None, None]).all()
    flipped = views.flipped
    assert (grid[flipped, 0, 0, 0] > grid[flipped, 0, -1, 0]).all()
    mask = patch_mask(3, 101, 101, 8, 0.5, generator)
    assert mask.shape == (3, 1, 101, 101)
    cells = mask[:, 0, ::8, ::8].reshape(3, -1).sum(1)
    assert (cells == round(0.5 * 13 * 13)).all()


def test_mismatched_encoder_or_channels_is_one_line_error(mim_file, tmp_path):
    resnet = tiny_config(f"model.pretrained={mim_file}")
    with pytest.raises(SaltsegError) as info:
        create_model(resnet.model_kwargs())
    message = str(info.value)
    assert "\n" not in message
    assert "'mobilenetv3_small_050'" in message and "'test_resnet'" in message
    two = fast_config(f"model.pretrained={mim_file}", "data.extra_channels=[depth]")
    with pytest.raises(SaltsegError, match="in_chans 1, but this model has .* in_chans 2"):
        create_model(two.model_kwargs())
    with pytest.raises(SaltsegError, match="frrn cannot load"):
        create_model("frrn", width=0.125, pretrained=mim_file)
    out = tmp_path / "run"
    with pytest.raises(SaltsegError, match="test_resnet"):
        train_kfold(resnet, out, data=mim_file.parent, progress=False)
    assert not out.exists()


def test_output_file_rules(mim_file, tiny_data, tmp_path):
    foreign = tmp_path / "weights.pt"
    foreign.write_bytes(b"someone's file")
    args = (fast_config(), tiny_data, "mim", 1)
    for overwrite in (False, True):
        with pytest.raises(SaltsegError, match="already exists|not a saltseg-pretrain file"):
            pretrain(*args, foreign, overwrite=overwrite, max_steps=1, progress=False)
    assert foreign.read_bytes() == b"someone's file"
    with pytest.raises(SaltsegError, match="is a folder"):
        pretrain(*args, tmp_path, max_steps=1, progress=False)
    ours = tmp_path / "ours.pt"
    ours.write_bytes(mim_file.read_bytes())
    with pytest.raises(SaltsegError, match="already exists: pass --overwrite"):
        pretrain(*args, ours, max_steps=1, progress=False)
    pretrain(*args, ours, overwrite=True, batch_size=4, max_steps=1, seed=1, progress=False)
    assert torch.load(ours, weights_only=True)["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ours.pt", "weights.pt"]


def test_bad_inputs_write_nothing(tiny_data, tmp_path):
    out = tmp_path / "enc.pt"
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {
        "unknown pretraining method 'mae'; valid: mim, vicregl, simclr": (tiny_data, "mae", 1),
        "epochs must be at least 1": (tiny_data, "mim", 0),
        "no PNG images found": (empty, "mim", 1),
    }
    for message, (data, method, epochs) in cases.items():
        with pytest.raises(SaltsegError, match=message):
            pretrain(fast_config(), data, method, epochs, out, progress=False)
    frrn = load_config(None, ["model.name=frrn", "model.width=0.125"])
    with pytest.raises(SaltsegError, match="needs a U-Net recipe"):
        pretrain(frrn, tiny_data, "mim", 1, out, progress=False)
    assert list(tmp_path.iterdir()) == [empty]
    assert list_methods() == ["mim", "vicregl", "simclr"]


def test_cli_pretrain(tiny_data, tmp_path):
    out = tmp_path / "simclr.pt"
    sets = [x for item in [*TINY, *FAST] for x in ("--set", item)]
    base = ["pretrain", "--data", str(tiny_data), "--config", str(CONFIGS / "demo.yaml"), *sets]
    runner = CliRunner()
    bad = runner.invoke(app, [*base, "--out", str(out), "--method", "byol"])
    assert bad.exit_code == 2 and "valid: mim, vicregl, simclr" in bad.output
    assert "Traceback" not in bad.output and not out.exists()
    args = [*base, "--out", str(out), "--method", "SimCLR", "--epochs", "1", "--batch-size", "13"]
    result = runner.invoke(app, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "simclr on 26 images, 1 epoch(s), 2 steps" in result.output
    again = runner.invoke(app, [*args, "--no-progress"])
    assert again.exit_code == 2 and "pass --overwrite" in again.output
    plain = tmp_path / "default.pt"
    result = runner.invoke(app, [*base, "--out", str(plain), "--epochs", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "simclr on 26 images" in result.output  # SimCLR unless --method says otherwise


def test_training_starts_from_the_pretrained_weights(mim_file, tiny_data):
    torch.set_num_threads(1)
    config = fast_config(f"model.pretrained={mim_file}")
    saved = torch.load(mim_file, weights_only=True)
    init = describe_init(str(mim_file))
    assert init["kind"] == "pretrain" and init["method"] == "mim"
    assert "mim pretraining (encoder and decoder), 1 epoch(s) on 26 images" in init_text(init)

    class Check(L.Callback):
        seen = False

        def on_train_start(self, trainer, module):
            for part in ("encoder", "decoder"):
                own = getattr(module.model, part).state_dict()
                for key, value in saved[part].items():
                    assert torch.equal(own[key].cpu(), value), key
            Check.seen = True

    tiles = load_dataset(tiny_data, "train")
    data = FoldDataModule.from_config(tiles, np.arange(4), config, seed=0)
    trainer = L.Trainer(
        max_steps=1,
        callbacks=[Check()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        accelerator="cpu",
    )
    module = SaltModule(config)
    trainer.fit(module, datamodule=data)
    assert Check.seen


def test_report_ancestry_names_the_initial_weights(mim_file, tmp_path):
    frame = pd.DataFrame({"id": ["a", "b"], "fold": [0, 1]})
    config = fast_config(f"model.pretrained={mim_file}")
    run = Run(tmp_path / "run")
    run.initialise(config, frame, info={"init": describe_init(str(mim_file))})
    assert ancestry(run)[0].startswith("Initial weights: mim pretraining (encoder and decoder)")
    old = Run(tmp_path / "old")  # a run.json without "init": read from the config
    old.initialise(fast_config("model.pretrained=true"), frame)
    assert ancestry(old) == ["Initial weights: timm ImageNet weights"]


# --- windows of seismic files ------------------------------------------------------------------

SEGY = Path(__file__).resolve().parents[1].parent / "shared" / "segy-sample"


def _grid_windows(cube: np.ndarray, low: float, high: float) -> dict[bytes, tuple[int, int, int]]:
    """Every window of the inline grid of ``cube`` (il, xl, samples), keyed by its bytes."""
    found = {}
    for line in range(cube.shape[0]):
        section = apply_clip(cube[line].T, low, high)
        for r in range(0, section.shape[0] - 100, 101):
            for c in range(0, section.shape[1] - 100, 101):
                found[section[r : r + 101, c : c + 101].tobytes()] = (line, r, c)
    return found


def test_npy_cube_windows_are_grid_windows_scaled_like_predict_volume(tmp_path):
    cube = np.random.default_rng(0).normal(0, 1000, (4, 250, 230)).astype(np.float32)
    path = tmp_path / "cube.npy"
    np.save(path, cube)
    windows, info = section_windows(path, max_windows=1000)
    low, high = np.percentile(cube, [1, 99])
    assert info["clip"] == pytest.approx([low, high], rel=1e-5)
    assert info["windows_on_grid"] == 4 * 2 * 2 and info["images"] == 16  # no crossline fits
    grid = _grid_windows(cube, *info["clip"])
    assert windows.shape == (16, 101, 101) and windows.dtype == np.float32
    assert {w.tobytes() for w in windows} == set(grid)
    some, _ = section_windows(path, max_windows=5, seed=1)
    again, _ = section_windows(path, max_windows=5, seed=1)
    other, _ = section_windows(path, max_windows=5, seed=2)
    assert len(some) == 5 and np.array_equal(some, again)
    assert {w.tobytes() for w in some} <= set(grid) and not np.array_equal(some, other)


def test_windows_touching_a_missing_trace_are_left_out(tmp_path):
    cube = np.random.default_rng(1).normal(0, 1, (3, 202, 110)).astype(np.float32)
    missing = (1, 150)
    path = tmp_path / "holes.sgy"
    spec = segyio.spec()
    spec.format, spec.samples, spec.tracecount = 5, list(range(110)), 3 * 202 - 1
    with segyio.create(path, spec) as f:
        i = 0
        for il in range(3):
            for xl in range(202):
                if (il, xl) == missing:
                    continue
                f.header[i] = {segyio.su.iline: 10 + il, segyio.su.xline: 100 + xl}
                f.trace[i] = cube[il, xl]
                i += 1
    windows, info = section_windows(path, max_windows=100)
    assert info["windows_on_grid"] == 6 and len(windows) == 5
    grid = _grid_windows(cube, *info["clip"])
    lines = sorted(grid[w.tobytes()] for w in windows)
    assert (1, 0, 101) not in lines and len(set(lines)) == 5


def test_pretraining_on_a_segy_line_and_tiles(tiny_data, tmp_path):
    if not SEGY.is_dir():
        pytest.skip(f"SEG-Y sample not found at {SEGY}")
    torch.set_num_threads(1)
    line = SEGY / "volve-line-il10117.sgy"
    out = tmp_path / "simclr.pt"
    before = line.read_bytes()
    sets = [x for item in [*TINY, *FAST] for x in ("--set", item)]
    base = ["pretrain", "--config", str(CONFIGS / "demo.yaml"), *sets, "--out", str(out)]
    runner = CliRunner()
    small = runner.invoke(app, [*base, "--data", str(SEGY / "f3.sgy"), "--no-progress"])
    assert small.exit_code == 2 and "smaller than one 101x101 window" in small.output
    assert len(small.output.strip().splitlines()) == 1 and not out.exists()
    args = ["--data", str(line), "--data", str(tiny_data), "--epochs", "1", "--windows", "7"]
    result = runner.invoke(app, [*base, *args, "--batch-size", "11", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "simclr on 33 images" in result.output  # the default method; 7 windows + 26 tiles
    assert line.read_bytes() == before
    saved = torch.load(out, weights_only=True)
    seismic, tiles = saved["data"]
    assert seismic["file"] == str(line.resolve()) and seismic["images"] == 7
    assert seismic["shape"] == [1, 202, 1125] and seismic["windows_on_grid"] == 2 * 11
    assert tiles["images"] == 26
    init = describe_init(str(out))
    assert f"{line.resolve()} (7)" in init_text(init)
