import json
from types import SimpleNamespace

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

from saltseg.checkpoints import load_model, read_checkpoint
from saltseg.config import load_config
from saltseg.errors import SaltsegError
from saltseg.inference.pipeline import tune_runs
from saltseg.runs import Run
from saltseg.training.kfold import train_kfold
from saltseg.training.module import SaltModule, build_criterion, onecycle_pct
from tests import helpers
from tests.helpers import CONFIGS, make_layout, oof_score


def tiny_config(*extra):
    """The shared tiny recipe, two full epochs (resuming needs an epoch to continue from)."""
    return helpers.tiny_config(
        "trainer.epochs=2", "trainer.limit_train_batches=1.0", "trainer.log_every_n_steps=1", *extra
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_layout(root, n=20, n_test=2)
    return root


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("runs") / "tiny"
    summary = train_kfold(tiny_config(), out, data=data, progress=False)
    return out, summary


def test_run_writes_every_artefact(run, data):
    out, summary = run
    assert (out / "config.yaml").exists()
    folds = pd.read_csv(out / "folds.csv", dtype={"id": str})
    assert sorted(folds["fold"].unique()) == [0, 1] and len(folds) == 20
    for fold in (0, 1):
        fold_dir = out / f"fold_{fold}"
        for name in ("best.ckpt", "last.ckpt", "metrics.csv", "oof.npz", "score.json"):
            assert (fold_dir / name).exists(), name
        metrics = pd.read_csv(fold_dir / "metrics.csv")
        assert {"val_metric", "val_loss", "val_iou", "train_loss"} <= set(metrics.columns)
        assert metrics["val_metric"].dropna().between(0, 1).all()
        assert len(metrics["val_metric"].dropna()) == 2  # one per epoch
        assert (metrics["epoch_seconds"].dropna() > 0).sum() == 2  # wall time of each epoch
        with np.load(fold_dir / "oof.npz") as oof:
            val_ids = sorted(folds.loc[folds["fold"] == fold, "id"])
            assert sorted(oof["ids"].tolist()) == val_ids
            assert oof["mask"].shape == (len(val_ids), 101, 101)
            assert "cls" in oof
    assert summary["oof_score"] == pytest.approx(oof_score(out, data))
    saved = json.loads((out / "oof_score.json").read_text())
    assert saved["oof_score"] == pytest.approx(summary["oof_score"])
    assert saved["n_tiles"] == 20


def test_training_ends_by_tuning_post_processing(run, data):
    out, summary = run
    pp = Run(out).postprocess()
    assert pp is not None
    assert pp.info["folds"] == [0, 1] and pp.info["complete"]
    assert pp.info["runs"] == [str(out)] and pp.info["weights"] == [1.0]
    assert pp.info["oof_score_before"] == pytest.approx(summary["oof_score"])
    tuned = summary["tuned"]
    assert tuned["oof_score"] == pp.info["oof_score_after"]
    assert tuned["postprocess"] == pp.describe() and tuned["complete"]
    assert tuned["file"] == str(out / "postprocess.json")
    # The same settings as 'saltseg tune' chooses on the run.
    again, _ = tune_runs([out], data=data, out=out.parent / "tuned_again.json")
    assert again.to_json() == pp.to_json()


def test_checkpoint_is_self_describing(run):
    out, _ = run
    ckpt = read_checkpoint(out / "fold_0" / "last.ckpt")
    assert ckpt["epoch"] == 1  # index of the last finished epoch
    # The fold is finished (--resume skips it): its optimizer state is dropped.
    assert "optimizer_states" not in ckpt and "lr_schedulers" not in ckpt
    assert "optimizer_states" not in read_checkpoint(out / "fold_0" / "best.ckpt")  # weights only
    model, config, meta = load_model(out / "fold_0" / "best.ckpt")
    assert config.model.encoder == "test_resnet"
    out_dict = model(torch.rand(2, 1, 101, 101))
    assert out_dict["mask"].shape == (2, 1, 101, 101)
    assert out_dict["cls"].shape == (2, 1)


def test_oof_loader_covers_every_tile(run):
    out, _ = run
    oof = Run(out).oof()
    assert len(oof["ids"]) == 20 and oof["ids"] == sorted(oof["ids"])
    assert set(oof["fold"]) == {0, 1}


def test_existing_run_is_not_overwritten(run, data):
    out, _ = run
    with pytest.raises(SaltsegError, match="already holds a run"):
        train_kfold(tiny_config(), out, data=data, progress=False)


class _Interrupt(L.Callback):
    """Stops training with an error when epoch ``at`` starts, as a crash would."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_epoch_start(self, trainer, module) -> None:
        if trainer.current_epoch == self.at:
            raise RuntimeError("interrupted")


def _train_interrupted(config, out, data, monkeypatch) -> None:
    """Train fold 0 of ``config`` into ``out`` until it crashes at the start of epoch 1."""
    from saltseg.training import fold as fold_module

    make_trainer = fold_module.make_trainer
    with monkeypatch.context() as patch:
        patch.setattr(
            fold_module,
            "make_trainer",
            lambda *a, **k: make_trainer(*a, **k, callbacks_extra=[_Interrupt(1)]),
        )
        with pytest.raises(RuntimeError, match="interrupted"):
            train_kfold(config, out, data=data, folds=[0], progress=False)


def test_resume_continues_from_the_saved_epoch(data, tmp_path, monkeypatch):
    out = tmp_path / "resume"
    _train_interrupted(tiny_config(), out, data, monkeypatch)
    interrupted = read_checkpoint(out / "fold_0" / "last.ckpt")
    assert interrupted["epoch"] == 0
    assert interrupted["optimizer_states"] and interrupted["lr_schedulers"]  # for the resume
    assert not (out / "fold_0" / "score.json").exists()
    train_kfold(tiny_config(), out, folds=[0], resume=True, progress=False)
    assert read_checkpoint(out / "fold_0" / "last.ckpt")["epoch"] == 1
    metrics = pd.read_csv(out / "fold_0" / "metrics.csv")
    assert metrics["val_metric"].notna().sum() == 2  # epoch 0 from the first start, 1 resumed
    assert sorted(metrics["epoch"].unique()) == [0, 1]
    assert (out / "fold_0" / "score.json").exists()
    # Trained on one fold of two: tuned on that fold's tiles, and it says so.
    pp = Run(out).postprocess()
    assert pp is not None and pp.info["folds"] == [0] and not pp.info["complete"]
    with pytest.raises(SaltsegError, match="nothing to resume"):
        train_kfold(tiny_config(), tmp_path / "none", data=data, resume=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"folds": [5]}, "out of range"),
        ({"data": "missing"}, "missing folder"),
    ],
)
def test_errors_before_training(data, tmp_path, kwargs, message):
    if kwargs.get("data") == "missing":
        kwargs = {**kwargs, "data": tmp_path / "missing"}
    else:
        kwargs = {**kwargs, "data": data}
    with pytest.raises(SaltsegError, match=message):
        train_kfold(tiny_config(), tmp_path / "run", progress=False, **kwargs)
    assert not (tmp_path / "run").exists()


def test_mismatched_folds_file(data, tmp_path):
    pd.DataFrame({"id": ["x", "y"], "fold": [0, 1]}).to_csv(tmp_path / "f.csv", index=False)
    config = tiny_config(f"data.folds_file={tmp_path / 'f.csv'}")
    with pytest.raises(SaltsegError, match="does not match the data"):
        train_kfold(config, tmp_path / "run", data=data, progress=False)
    assert not (tmp_path / "run").exists()


def test_bad_model_config_fails_early(data, tmp_path):
    with pytest.raises(SaltsegError):
        train_kfold(tiny_config("model.wings=3"), tmp_path / "run", data=data, progress=False)
    assert not (tmp_path / "run").exists()


def test_loss_schedule_switches(tmp_path):
    config = load_config(CONFIGS / "demo.yaml")
    criterion = build_criterion(config.loss)
    assert criterion.loss.at(0) is not criterion.loss.at(config.loss.stages[1].epoch)
    logits = torch.zeros(2, 1, 8, 8, requires_grad=True)
    target = torch.zeros(2, 1, 8, 8)
    target[0, 0, :4] = 1
    total, parts = criterion({"mask": logits, "cls": torch.zeros(2, 1)}, target, epoch=0)
    assert torch.isfinite(total) and {"mask", "cls", "total"} <= set(parts)
    total.backward()
    assert torch.isfinite(logits.grad).all()


def test_frrn_recipe_trains(data, tmp_path):
    overrides = ["trainer.epochs=1", "data.k=2", "data.batch_size=8", "data.num_workers=0"]
    overrides += ["model.width=0.125", "augment.size=101"]
    config = load_config(CONFIGS / "frrn.yaml", overrides)
    summary = train_kfold(config, tmp_path / "frrn", data=data, folds=[0], progress=False)
    assert summary["oof_score"] == pytest.approx(oof_score(tmp_path / "frrn", data))
    model, config, _ = load_model(tmp_path / "frrn" / "fold_0" / "best.ckpt")
    assert model.config["name"] == "frrn" and model.config["layout"] == "b"


def test_discriminative_lrs_and_frozen_encoder_warm_up():
    from saltseg.training.module import SaltModule, param_groups

    config = tiny_config("optim.encoder_lr_mult=0.1", "optim.freeze_encoder_epochs=1")
    module = SaltModule(config)
    groups = param_groups(module.model, config.optim)
    assert [g["lr"] for g in groups] == pytest.approx([config.optim.lr * 0.1, config.optim.lr])
    encoder_ids = {id(p) for p in module.model.encoder.parameters()}
    assert {id(p) for p in groups[0]["params"]} == encoder_ids
    assert not encoder_ids & {id(p) for p in groups[1]["params"]}
    module.on_train_epoch_start()  # epoch 0: encoder frozen
    assert not any(p.requires_grad for p in module.model.encoder.parameters())
    others = [p for p in module.model.parameters() if id(p) not in encoder_ids]
    assert all(p.requires_grad for p in others)
    module._trainer = SimpleNamespace(current_epoch=1)  # epoch 1: encoder trains again
    module.on_train_epoch_start()
    assert all(p.requires_grad for p in module.model.encoder.parameters())


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_optimizer_uses_fused_kernels_with_the_same_steps(optimizer):
    from saltseg.training.optim import build_optimizer

    config = tiny_config(f"optim.optimizer={optimizer}", "optim.weight_decay=0.01")
    torch.manual_seed(0)
    start = [torch.randn(6, 5), torch.randn(5)]
    grads = [[torch.randn_like(t) for t in start] for _ in range(5)]
    finals = []
    for fused in (True, False):
        params = [t.clone().requires_grad_() for t in start]
        groups = [{"params": params, "lr": 0.01}]
        cfg = config.optim
        if fused:
            opt = build_optimizer(groups, cfg)
            assert opt.defaults["fused"]
        elif optimizer == "sgd":  # the default kernels, for reference
            opt = torch.optim.SGD(
                groups, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True
            )
        else:
            opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
        for step in grads:
            for p, g in zip(params, step, strict=True):
                p.grad = g.clone()
            opt.step()
        finals.append([p.detach() for p in params])
    for a, b, s in zip(*finals, start, strict=True):
        assert not torch.equal(a, s)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_optimizer_keeps_the_default_kernels_where_no_fused_one_applies():
    from saltseg.training.optim import build_optimizer, fused_kernels_apply

    config = tiny_config()
    assert fused_kernels_apply([torch.zeros(3, dtype=torch.float64)])
    assert not fused_kernels_apply([])
    assert not fused_kernels_apply([torch.zeros(3, dtype=torch.int64)])
    meta = [torch.zeros(3, device="meta", requires_grad=True)]
    assert not fused_kernels_apply(meta)
    assert not build_optimizer([{"params": meta, "lr": 0.1}], config.optim).defaults["fused"]
    params = [torch.zeros(3, requires_grad=True)]
    opt = build_optimizer([{"params": params, "lr": 0.1}], config.optim)
    assert opt.defaults["fused"]
    params[0].grad = torch.ones(3)
    opt.step()
    assert (params[0] < 0).all()


@pytest.mark.parametrize("total", [1, 2, 3, 4, 5, 9, 100])
@pytest.mark.parametrize("pct_start", [0.05, 0.2, 0.95])
def test_onecycle_warm_up_fits_short_runs(total, pct_start):
    pct = onecycle_pct(pct_start, total)
    assert 0 < pct < 1
    if total >= 40:
        assert pct == pct_start  # long runs keep the recipe's warm-up
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=1.0, total_steps=total, pct_start=pct
    )
    for _ in range(total - 1):
        optimizer.step()
        schedule.step()  # a warm-up of no steps would divide by zero
        assert 0 < optimizer.param_groups[0]["lr"] <= 1.0


def test_channels_last_trains_to_the_same_numbers():
    """The memory layout changes the order of float sums only: same loss, outputs and
    gradients up to rounding (a layout bug would change them by their own size)."""
    torch.manual_seed(0)
    image, mask = torch.rand(4, 1, 128, 128), (torch.rand(4, 1, 128, 128) > 0.5).float()
    results = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        module = SaltModule(
            tiny_config(f"trainer.channels_last={channels_last}", "model.dropout=0")
        )
        outputs = module(image)
        loss, _ = module.criterion(outputs, mask, epoch=0)
        loss.backward()
        grad = next(module.model.parameters()).grad.contiguous()
        results.append((float(loss.detach()), outputs["mask"].contiguous(), grad))
    (loss, out, grad), (loss_cl, out_cl, grad_cl) = results
    assert loss_cl == pytest.approx(loss, rel=1e-5)
    torch.testing.assert_close(out_cl, out, rtol=0, atol=1e-4)
    torch.testing.assert_close(grad_cl, grad, rtol=0, atol=1e-2 * float(grad.abs().max()))


def _weights(path):
    return read_checkpoint(path)["state_dict"]


def test_best_checkpoint_is_the_best_validated_epoch(run):
    out, _ = run
    metrics = pd.read_csv(Run(out).metrics_path(0)).dropna(subset=["val_metric"])
    best = read_checkpoint(out / "fold_0" / "best.ckpt")
    assert best["epoch"] == int(metrics.loc[metrics["val_metric"].idxmax(), "epoch"])


def test_keep_last_keeps_the_final_epoch(data, tmp_path):
    torch.set_num_threads(1)
    config = tiny_config("trainer.keep=last")
    train_kfold(config, tmp_path / "run", data=data, folds=[0], progress=False)
    fold = tmp_path / "run" / "fold_0"
    assert read_checkpoint(fold / "best.ckpt")["epoch"] == config.trainer.epochs - 1
    kept, last = _weights(fold / "best.ckpt"), _weights(fold / "last.ckpt")
    assert kept.keys() == last.keys()
    assert all(torch.equal(kept[k], last[k]) for k in kept)
    score = json.loads((fold / "score.json").read_text())
    assert score["best_epoch"] == config.trainer.epochs - 1


def test_balanced_training_runs_and_lightning_sets_the_sampler_epoch(data, tmp_path, monkeypatch):
    from saltseg.data.datamodule import CoverageSampler

    torch.set_num_threads(1)
    epochs: list[int] = []
    set_epoch = CoverageSampler.set_epoch

    def spy(self, epoch):
        epochs.append(epoch)
        set_epoch(self, epoch)

    monkeypatch.setattr(CoverageSampler, "set_epoch", spy)
    config = tiny_config("trainer.epochs=2", "data.balance=1", "data.balance_until=1")
    train_kfold(config, tmp_path / "run", data=data, folds=[0], progress=False)
    assert epochs == [0, 1]
    metrics = pd.read_csv(Run(tmp_path / "run").metrics_path(0))
    assert len(metrics.dropna(subset=["val_metric"])) == 2


def test_validation_batches_are_larger_unless_set(data):
    from saltseg.data.datamodule import FoldDataModule
    from saltseg.data.tgs import load_dataset

    tiles = load_dataset(data, "train")
    config = load_config(CONFIGS / "demo.yaml", [f"data.root={data}", "data.batch_size=2"])
    module = FoldDataModule.from_config(tiles, np.arange(9), config, 0)
    assert module.train_dataloader().batch_size == 2
    assert [len(b["image"]) for b in module.val_dataloader()] == [8, 1]
    config = load_config(CONFIGS / "demo.yaml", [f"data.root={data}", "data.val_batch_size=3"])
    assert (
        FoldDataModule.from_config(tiles, np.arange(9), config, 0).val_dataloader().batch_size == 3
    )
    with pytest.raises(SaltsegError, match="val_batch_size"):
        load_config(CONFIGS / "demo.yaml", ["data.val_batch_size=0"])


def test_balance_weights_even_out_the_coverage_classes():
    from saltseg.data.datamodule import balance_weights

    masks = np.zeros((10, 10, 10), dtype=bool)
    masks[6:, :5] = True  # 6 empty tiles, 4 half-covered (class 5)
    uniform = balance_weights(masks, 0.0)
    np.testing.assert_allclose(uniform, np.full(10, 0.1))
    even = balance_weights(masks, 1.0)
    assert even[:6].sum() == pytest.approx(0.5) and even[6:].sum() == pytest.approx(0.5)
    half = balance_weights(masks, 0.5)
    assert 0.4 < half[6:].sum() < 0.5
    masks[9, :9] = True  # a class-9 tile beside the three of class 5
    kept = balance_weights(masks, 1.0, empty=False)
    assert kept[:6].sum() == pytest.approx(0.6)  # the empty tiles keep their share
    assert kept[9] == pytest.approx(0.2) and kept[6:9].sum() == pytest.approx(0.2)


def test_coverage_sampler_goes_back_to_a_shuffle_and_replays_an_epoch():
    from saltseg.data.datamodule import CoverageSampler

    weights = np.array([0.0] * 9 + [1.0])  # only the last tile while balanced
    sampler = CoverageSampler(weights, until=2, seed=3)
    assert list(sampler) == [9] * 10 and list(sampler) == [9] * 10  # epochs 0 and 1
    third = list(sampler)
    assert sorted(third) == list(range(10))  # epoch 2: every tile once
    sampler.set_epoch(2)  # as after a resume: the same draws as before
    assert list(sampler) == third
    assert len(CoverageSampler(weights)) == 10
    assert set(CoverageSampler(weights, until=None, seed=3)) == {9}


def test_balanced_training_draws_every_coverage_class_alike(data):
    from saltseg.data.datamodule import FoldDataModule
    from saltseg.data.folds import coverage_class
    from saltseg.data.tgs import load_dataset

    tiles = load_dataset(data, "train")
    config = load_config(
        CONFIGS / "demo.yaml", [f"data.root={data}", "data.batch_size=4", "data.balance=1"]
    )
    module = FoldDataModule.from_config(tiles, np.arange(4), config, 0)
    loader = module.train_dataloader()
    classes = coverage_class(module.train_tiles.masks)
    present = np.unique(classes)
    assert len(present) > 2
    drawn = np.concatenate([b["index"].numpy() for _ in range(40) for b in loader])
    assert len(drawn) == 40 * len(loader) * 4
    share = np.array([(classes[drawn] == c).mean() for c in present])
    np.testing.assert_allclose(share, 1 / len(present), atol=0.05)  # every class alike
    plain = FoldDataModule.from_config(tiles, np.arange(4), config, 0)
    plain.balance = 0.0  # a shuffle: no tile twice in an epoch
    once = np.concatenate([b["index"].numpy() for b in plain.train_dataloader()])
    assert len(set(once.tolist())) == len(once)
    with pytest.raises(SaltsegError, match="balance"):
        load_config(CONFIGS / "demo.yaml", ["data.balance=2"])
    with pytest.raises(SaltsegError, match="balance_until"):
        load_config(CONFIGS / "demo.yaml", ["data.balance_until=-1"])


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")  # no Trainer attached
def test_tile_only_training_step_ignores_the_padded_border():
    from saltseg.training.module import SaltModule

    config = tiny_config("augment.size=128", "loss.tile_only=true", "loss.cls_weight=0")
    module = SaltModule(config)
    assert module.criterion.window == (13, 101)
    module.eval()  # no dropout: two passes give the same logits
    image = torch.rand(2, 1, 128, 128)
    mask = torch.zeros(2, 1, 128, 128)
    loss = module.training_step({"image": image, "mask": mask}, 0)
    mask[..., :13, :] = 1  # salt only in the reflected border: the same loss
    assert module.training_step({"image": image, "mask": mask}, 0).item() == pytest.approx(
        loss.item()
    )


def test_weight_ema_follows_the_model_and_swaps_back():
    from saltseg.training.module import WeightEMA

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    start = {k: v.clone() for k, v in net.state_dict().items()}
    ema = WeightEMA(net, decay=0.5)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    net[1].num_batches_tracked += 3
    ema.update(net)  # first update: decay ramped to 2/11
    expected = start["0.weight"] + (1 - 2 / 11) * 1.0
    torch.testing.assert_close(ema.state["0.weight"], expected)
    assert int(ema.state["1.num_batches_tracked"]) == 3
    trained = {k: v.clone() for k, v in net.state_dict().items()}
    ema.swap(net)
    torch.testing.assert_close(net[0].weight.detach(), expected)
    ema.swap(net)
    assert all(torch.equal(v, trained[k]) for k, v in net.state_dict().items())


def test_ema_weights_are_kept_and_a_resumed_run_goes_on_averaging(data, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    config = tiny_config("optim.ema_decay=0.9", "trainer.keep=last")
    out = tmp_path / "ema"
    _train_interrupted(config, out, data, monkeypatch)
    steps = read_checkpoint(out / "fold_0" / "last.ckpt")["ema_updates"]
    assert steps > 0
    train_kfold(config, out, folds=[0], resume=True, progress=False)
    last = read_checkpoint(out / "fold_0" / "last.ckpt")
    assert last["ema_updates"] == 2 * steps  # the average went on from where it stopped
    kept = _weights(out / "fold_0" / "best.ckpt")
    assert "ema_trained_state" not in read_checkpoint(out / "fold_0" / "best.ckpt")
    assert all(torch.equal(kept[k], last["state_dict"][k]) for k in kept)  # the average, kept
    trained = last["ema_trained_state"]
    assert any(not torch.equal(kept[f"model.{k}"], v) for k, v in trained.items())
    model, _, _ = load_model(out / "fold_0" / "best.ckpt")
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], kept[f"model.{k}"]) for k in loaded)
    with pytest.raises(SaltsegError, match="ema_decay"):
        tiny_config("optim.ema_decay=1")


@pytest.mark.parametrize(
    ("precision", "clip", "fused"),
    [("16-mixed", 1.0, False), ("16-mixed", None, True), ("32-true", 1.0, True)],
)
def test_clipping_under_a_grad_scaler_keeps_the_default_kernels(precision, clip, fused):
    """Lightning refuses to clip gradients that a fused optimizer unscales itself."""
    from saltseg.training.module import SaltModule

    config = tiny_config(
        f"trainer.precision={precision}",
        f"trainer.gradient_clip_val={'null' if clip is None else clip}",
        "optim.schedule=constant",
    )
    optimizer = SaltModule(config).configure_optimizers()["optimizer"]
    assert bool(optimizer.defaults["fused"]) is fused


def test_auto_precision_is_bf16_only_where_the_device_computes_it(monkeypatch):
    from saltseg.training import precision

    assert isinstance(precision.cpu_has_bf16(), bool)
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert precision.resolve_precision("auto", "cpu") == "bf16-mixed"
    assert precision.resolve_precision("auto", "auto") == "bf16-mixed"
    assert precision.resolve_precision("auto", "mps") == "32"
    assert precision.resolve_precision("32", "cpu") == "32"
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert precision.resolve_precision("auto", "cpu") == "32"
    assert precision.resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"


def test_bf16_counts_as_native_only_with_the_cpu_flags_for_it(tmp_path, monkeypatch):
    from saltseg.training import precision

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
    assert precision._cpu_flags(info) == {"fpu", "sse2", "avx2", "avx512f", "avx512bw"}
    assert precision._cpu_flags(tmp_path / "missing") == set()
    monkeypatch.setattr(precision.torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setattr(precision.platform, "machine", lambda: "x86_64")
    # plain AVX-512: oneDNN would emulate bfloat16, slower than float32
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx512f", "avx512bw"})
    assert precision.cpu_has_bf16() is False
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert precision.cpu_has_bf16() is True
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"amx_bf16"})
    assert precision.cpu_has_bf16() is True
    monkeypatch.setattr(precision.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(precision, "_cpu_flags", set)
    assert precision.cpu_has_bf16() is True
    monkeypatch.setattr(precision.torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert precision.cpu_has_bf16() is False


def test_auto_precision_trains_in_what_the_cpu_is_fast_at(data, tmp_path, monkeypatch):
    from saltseg.training import fold, precision

    seen = []
    real = fold.L.Trainer

    def spy(*args, **kwargs):
        seen.append(kwargs["precision"])
        return real(*args, **kwargs)

    torch.set_num_threads(1)
    monkeypatch.setattr(fold.L, "Trainer", spy)
    config = tiny_config("trainer.precision=auto", "trainer.epochs=1")
    train_kfold(config, tmp_path / "run", data=data, folds=[0], progress=False)
    # the early check of the trainer settings and the fold's trainer both get the resolved value
    assert set(seen) == {"bf16-mixed" if precision.cpu_has_bf16() else "32"}
    assert read_checkpoint(tmp_path / "run" / "fold_0" / "best.ckpt")["epoch"] == 0
    with pytest.raises(SaltsegError, match="precision"):
        tiny_config("trainer.precision=fp8")
