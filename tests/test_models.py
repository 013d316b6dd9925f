"""Model zoo: one base tester per named preset, plus scSE, hypercolumn, weights and registry."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pydantic
import pytest
import timm
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from saltseg.cli import app
from saltseg.errors import SaltsegError
from saltseg.losses.criterion import SegmentationCriterion
from saltseg.models import (
    PRESETS,
    ModelPreset,
    SegmentationModel,
    create_model,
    describe_models,
    list_models,
)
from saltseg.models.base import check_pretrained
from saltseg.models.encoders import Encoder
from saltseg.models.modules import (
    SCSE,
    ChannelSE,
    GlobalPool,
    HypercolumnHead,
    SpatialSE,
    crop_padding,
    pad_to_multiple,
    standardize,
    upsample_to,
)
from saltseg.models.unet import UNet, default_decoder_channels, fuse_logits

PRESET_NAMES = ["resnet34", "seresnext50_32x4d", "inception_v4", "frrn_a", "frrn_b"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _keys_digest(model: torch.nn.Module) -> tuple[int, str]:
    """Count and short SHA-256 of the ordered state dict keys (checkpoints load by these keys)."""
    keys = list(model.state_dict())
    return len(keys), hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def _finite_grads(model: torch.nn.Module) -> bool:
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    return all(g is not None and torch.isfinite(g).all() for g in grads)


class BaseModelTester:
    """Random-init model of one recipe, small widths: forward, backward, sizes, config."""

    name: str
    kwargs: dict = {}
    keys: tuple[int, str]  # state dict keys recorded before the SegmentationModel refactor

    @pytest.fixture(scope="class")
    def model(self) -> torch.nn.Module:
        torch.manual_seed(0)
        return create_model(self.name, **self.kwargs)

    def test_forward_backward(self, model):
        model.train()
        model.zero_grad()
        out = model(torch.randn(2, 1, 101, 101))
        assert out["mask"].shape == (2, 1, 101, 101)
        assert out["cls"].shape == (2, 1)
        assert "aux" not in out
        assert torch.isfinite(out["mask"]).all() and torch.isfinite(out["cls"]).all()
        (out["mask"].mean() + out["cls"].mean()).backward()
        assert _finite_grads(model)

    def test_any_input_size(self, model):
        model.eval()
        with torch.no_grad():
            for shape in [(2, 1, 96, 140), (1, 1, 128, 128)]:
                out = model(torch.randn(*shape))
                assert out["mask"].shape == (shape[0], 1, *shape[2:])
                assert torch.isfinite(out["mask"]).all()

    def test_config_round_trip(self, model):
        assert model.config["name"] in list_models()
        rebuilt = create_model(model.config)
        assert rebuilt.config == model.config
        ours = {k: v.shape for k, v in model.state_dict().items()}
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == ours

    def test_wrong_channels(self, model):
        with pytest.raises(SaltsegError, match="expects input N x 1"):
            model(torch.randn(2, 3, 64, 64))

    def test_state_dict_keys_unchanged(self, model):
        assert isinstance(model, SegmentationModel)
        assert _keys_digest(model) == self.keys


class TestResnet34(BaseModelTester):
    name = "resnet34"
    kwargs = {"decoder_width": 0.25}
    keys = (350, "3efee9a4cb0fa344")


class TestSeresnext50(BaseModelTester):
    name = "seresnext50_32x4d"
    kwargs = {"decoder_width": 0.125}
    keys = (516, "a0a6eca13efa2495")


class TestInceptionV4(BaseModelTester):
    name = "inception_v4"
    kwargs = {"decoder_width": 0.125}
    keys = (1028, "402aeca2e00090e9")


class TestFrrnA(BaseModelTester):
    name = "frrn_a"
    kwargs = {"width": 0.125}
    keys = (323, "a3a764682a4d2dbd")


class TestFrrnB(BaseModelTester):
    name = "frrn_b"
    kwargs = {"width": 0.125}
    keys = (379, "ad70a36ea8d465a3")

    def test_one_more_pooling_level(self, model):
        assert len(model.down) == len(create_model("frrn_a", width=0.125).down) + 1
        assert model.stride == 32


def _tiny_unet(**kwargs) -> UNet:
    torch.manual_seed(0)
    return UNet("resnet18", decoder_width=0.25, **kwargs)


def test_cse_scales_channels_only():
    x = torch.rand(2, 8, 5, 7) + 0.5
    ratio = ChannelSE(8, reduction=2)(x) / x
    assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), atol=1e-6)
    assert not torch.allclose(ratio[:, :1], ratio[:, 1:2])


def test_sse_scales_positions_only():
    x = torch.rand(2, 8, 5, 7) + 0.5
    ratio = SpatialSE(8)(x) / x
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-6)
    assert not torch.allclose(ratio[..., :1, :1], ratio[..., 2:3, 3:4])


@pytest.mark.parametrize("mode", ["add", "max"])
def test_scse_combines_both_branches(mode):
    x = torch.randn(2, 8, 5, 7)
    block = SCSE(8, reduction=2, mode=mode)
    cse, sse = block.cse(x), block.sse(x)
    expected = cse + sse if mode == "add" else torch.maximum(cse, sse)
    assert torch.allclose(block(x), expected)


def test_scse_unknown_mode():
    with pytest.raises(SaltsegError, match="scse_mode 'mean'.*add, max"):
        SCSE(8, mode="mean")


def test_encoder_scse_is_in_the_down_path():
    encoder = Encoder("resnet18", scse=True).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        before = encoder(x)
        encoder.scse[0].sse.conv.bias.add_(5.0)
        after = encoder(x)
    assert len(before) == len(encoder.out_channels)
    assert all(not torch.allclose(b, a) for b, a in zip(before, after, strict=True))


def test_decoder_scse_on_every_block():
    model = _tiny_unet(scse_decoder=True)
    assert all(isinstance(block.scse, SCSE) for block in model.decoder)
    assert model.encoder.scse is None


def test_default_decoder_channels_follow_the_encoder():
    assert default_decoder_channels([64, 64, 128, 256, 512]) == [256, 128, 64, 32, 16]
    assert default_decoder_channels([64, 256, 512, 1024, 2048], 0.5) == [128, 64, 32, 16, 8]
    assert default_decoder_channels([24, 48, 96, 192]) == [96, 48, 24, 16]


def test_hypercolumn_channels():
    model = _tiny_unet(hypercolumn=True)
    assert model.decoder_channels == (64, 32, 16, 8, 4)
    assert model.hypercolumn_channels == 64 + 32 + 16 + 8 + 4
    assert model(torch.randn(2, 1, 101, 101))["mask"].shape == (2, 1, 101, 101)


def test_hypercolumn_head_equals_conv_on_concatenation():
    head = HypercolumnHead([6, 4, 3], mid_channels=5).eval()
    stages = [torch.randn(2, 6, 4, 4), torch.randn(2, 4, 8, 8), torch.randn(2, 3, 16, 16)]
    column = torch.cat([upsample_to(s, (16, 16), "bilinear") for s in stages], dim=1)
    assert column.shape[1] == 13
    weight = torch.cat([p.weight for p in head.proj], dim=1)
    expected = head.out(torch.relu(head.bn(torch.nn.functional.conv2d(column, weight))))
    assert torch.allclose(head(stages, (16, 16)), expected, atol=1e-5)


def test_hypercolumn_head_context_equals_tiled_vector_in_the_column():
    head = HypercolumnHead([6, 3], mid_channels=5, context_channels=7).eval()
    stages = [torch.randn(2, 6, 4, 4), torch.randn(2, 3, 8, 8)]
    context = torch.randn(2, 7)
    tiled = context[:, :, None, None].expand(2, 7, 8, 8)
    column = torch.cat([upsample_to(stages[0], (8, 8), "bilinear"), stages[1], tiled], dim=1)
    weight = torch.cat([*(p.weight for p in head.proj), head.context.weight[..., None, None]], 1)
    expected = head.out(torch.relu(head.bn(torch.nn.functional.conv2d(column, weight))))
    assert torch.allclose(head(stages, (8, 8), context), expected, atol=1e-5)
    with pytest.raises(SaltsegError, match="context vector"):
        head(stages, (8, 8))


@pytest.mark.parametrize("hypercolumn", [True, False])
def test_context_lets_one_image_level_change_move_every_logit(hypercolumn):
    model = _tiny_unet(context=True, hypercolumn=hypercolumn).eval()
    assert model.config["context"]
    x = torch.randn(1, 1, 101, 101)
    with torch.no_grad():
        before = model(x)["mask"]
        # Only the image-level path changes: the context projection's weights.
        proj = model.head.context if hypercolumn else model.context_proj
        proj.weight.add_(1.0)
        after = model(x)["mask"]
    assert before.shape == (1, 1, 101, 101)
    assert (after - before).abs().flatten().min() > 0
    rebuilt = create_model(model.config, pretrained=False)
    assert rebuilt.config["context"] and rebuilt.context


def test_fuse_logits_is_the_logit_of_the_product_of_probabilities():
    mask = torch.randn(3, 1, 7, 7, dtype=torch.float64) * 8
    cls = torch.randn(3, 1, dtype=torch.float64) * 8
    fused = fuse_logits(mask, cls)
    product = torch.sigmoid(mask) * torch.sigmoid(cls).reshape(3, 1, 1, 1)
    assert torch.allclose(torch.sigmoid(fused), product, atol=1e-12)
    # Far past where sigmoid saturates in float32 the fused logit stays finite: about the smaller.
    big = fuse_logits(torch.full((1, 1, 1, 1), 300.0), torch.tensor([[200.0]]))
    assert big.item() == pytest.approx(200.0)
    assert fuse_logits(torch.full((1, 1, 1, 1), -300.0), torch.tensor([[200.0]])).item() < -299


def test_fused_classifier_gates_the_mask_and_trains_from_it():
    model = _tiny_unet(classifier=True, fuse_classifier=True)
    x = torch.randn(2, 1, 101, 101)
    out = model(x)
    assert out["mask"].shape == (2, 1, 101, 101) and out["cls"].shape == (2, 1)
    # A mask loss alone reaches the classifier's weights.
    out["mask"].mean().backward()
    assert model.classifier[-1].weight.grad.abs().sum() > 0
    # A classifier sure the tile is empty empties the mask.
    with torch.no_grad():
        model.classifier[-1].bias.fill_(-50.0)
        model.classifier[-1].weight.zero_()
        assert torch.sigmoid(model.eval()(x)["mask"]).max() < 1e-20
    rebuilt = create_model(model.config, pretrained=False)
    assert rebuilt.config["fuse_classifier"]
    with pytest.raises(SaltsegError, match="fuse_classifier needs classifier"):
        _tiny_unet(classifier=False, fuse_classifier=True)


def test_fuse_aux_returns_the_ungated_head_for_the_loss_in_training_only():
    model = _tiny_unet(classifier=True, fuse_classifier=True, fuse_aux=True).train()
    x = torch.randn(2, 1, 101, 101)
    out = model(x)
    (raw,) = out["aux"]
    assert raw.shape == out["mask"].shape
    # The fused mask is the gated head: sigmoid(fused) = sigmoid(raw) * sigmoid(cls).
    gate = torch.sigmoid(out["cls"]).reshape(2, 1, 1, 1)
    assert torch.allclose(torch.sigmoid(out["mask"]), torch.sigmoid(raw) * gate, atol=1e-6)
    # The aux loss on empty truth pushes the head itself, whatever the classifier says.
    with torch.no_grad():
        model.classifier[-1].bias.fill_(-50.0)
        model.classifier[-1].weight.zero_()
    criterion = SegmentationCriterion("bce", cls_weight=0.0, aux_weight=1.0)
    total, parts = criterion(model(x), torch.zeros(2, 1, 101, 101))
    assert parts["aux"] > 0.1 > parts["mask"]
    assert "aux" not in model.eval()(x)
    assert create_model(model.config, pretrained=False).config["fuse_aux"]
    with pytest.raises(SaltsegError, match="fuse_aux needs fuse_classifier"):
        _tiny_unet(classifier=True, fuse_aux=True)


def test_classifier_max_pool_hears_one_local_response():
    pool = GlobalPool("avgmax")
    flat = torch.zeros(1, 2, 8, 8)
    spot = flat.clone()
    spot[0, 1, 3, 4] = 64.0
    # Averages: 0 and 1 for the spot; maxima 0 and 64: only the max half sees it at full strength.
    assert torch.equal(pool(flat), torch.zeros(1, 4))
    assert torch.equal(pool(spot), torch.tensor([[0.0, 1.0, 0.0, 64.0]]))
    # Several maps of different sizes: averages of all, then maxima of all.
    both = pool([spot, torch.full((1, 3, 2, 2), 2.0)])
    assert torch.equal(both, torch.tensor([[0.0, 1.0, 2.0, 2.0, 2.0, 0.0, 64.0, 2.0, 2.0, 2.0]]))
    with pytest.raises(SaltsegError, match="classifier_pool must be one of"):
        GlobalPool("median")


@pytest.mark.parametrize("stages", [False, True])
def test_classifier_pool_and_stages_options(stages):
    model = _tiny_unet(classifier=True, classifier_pool="avgmax", classifier_stages=stages)
    enc, widths = model.encoder.out_channels[-1], model.decoder_channels
    assert model.classifier[-1].in_features == 2 * (enc + (sum(widths) if stages else 0))
    out = model(torch.randn(2, 1, 101, 101))
    assert out["cls"].shape == (2, 1)
    # The tile decision reads the decoder only when asked to.
    out["cls"].sum().backward()
    reached = model.decoder[-1].conv2[0].weight.grad
    assert (reached is not None and reached.abs().sum() > 0) == stages
    rebuilt = create_model(model.config, pretrained=False)
    assert rebuilt.config["classifier_pool"] == "avgmax"
    assert rebuilt.config["classifier_stages"] == stages
    for bad in ({"classifier_stages": True}, {"classifier_pool": "avgmax"}):
        with pytest.raises(SaltsegError, match="need classifier: true"):
            _tiny_unet(**bad)
    with pytest.raises(SaltsegError, match="classifier_pool must be one of"):
        _tiny_unet(classifier=True, classifier_pool="max")
    # The plain head keeps its parameter names, so older checkpoints still load.
    assert {k for k in _tiny_unet(classifier=True).state_dict() if k.startswith("classifier")} == {
        "classifier.3.weight",
        "classifier.3.bias",
    }


def test_side_outputs_only_in_training():
    model = _tiny_unet(side_outputs=True)
    aux = model(torch.randn(2, 1, 101, 101))["aux"]
    assert len(aux) == len(model.decoder)
    assert all(a.shape == (2, 1, 101, 101) for a in aux)
    with torch.no_grad():
        assert "aux" not in model.eval()(torch.randn(1, 1, 101, 101))


def test_classifier_off_and_extra_channels():
    model = _tiny_unet(in_chans=2)
    out = model(torch.randn(2, 2, 101, 101))
    assert set(out) == {"mask"}
    frrn = create_model("frrn", width=0.125, in_chans=3)
    assert set(frrn(torch.randn(2, 3, 40, 40))) == {"mask"}


def test_pad_and_crop_round_trip():
    x = torch.randn(1, 1, 101, 96)
    padded, pad = pad_to_multiple(x, 32)
    assert padded.shape[-2:] == (128, 96)
    assert torch.equal(crop_padding(padded, pad), x)


def test_local_timm_weights_file(tmp_path):
    source = timm.create_model("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    model = _tiny_unet(pretrained=str(path))
    conv1 = model.encoder.model.conv1.weight
    assert torch.allclose(conv1, source.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(model.encoder.model.layer4[1].conv2.weight, source.layer4[1].conv2.weight)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_encoder_weights_round_trip(tmp_path, suffix):
    trained = _tiny_unet(scse_encoder=True)
    state = {k: v.contiguous() for k, v in trained.encoder.state_dict().items()}
    path = tmp_path / f"encoder{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    torch.manual_seed(1)
    loaded = UNet("resnet18", decoder_width=0.25, scse_encoder=True, pretrained=path)
    assert loaded.config["pretrained"] == str(path)
    for key, value in loaded.encoder.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_flattened_timm_keys(tmp_path):
    source = timm.create_model("inception_v4")
    torch.save(source.state_dict(), tmp_path / "inception.pth")
    encoder = Encoder("inception_v4", in_chans=1, pretrained=str(tmp_path / "inception.pth"))
    last = encoder.model.features_21.branch0.conv.weight
    assert torch.equal(last, source.features[21].branch0.conv.weight)


def test_bad_weights_files(tmp_path):
    with pytest.raises(SaltsegError, match="not found: .*missing.pth"):
        _tiny_unet(pretrained=str(tmp_path / "missing.pth"))
    other = tmp_path / "other.pth"
    torch.save(timm.create_model("mobilenetv3_small_050").state_dict(), other)
    with pytest.raises(SaltsegError, match="does not hold weights for timm encoder 'resnet18'"):
        _tiny_unet(pretrained=str(other))
    junk = tmp_path / "junk.pth"
    junk.write_text("not weights")
    with pytest.raises(SaltsegError, match="cannot read weights file"):
        _tiny_unet(pretrained=str(junk))


def test_offline_imagenet_weights_explain_what_to_do(monkeypatch):
    import huggingface_hub.constants
    import timm.models._builder

    def no_network(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(timm.models._builder, "load_pretrained", no_network)
    with pytest.raises(SaltsegError) as info:
        create_model("unet", encoder="resnet18", pretrained=True)
    message = str(info.value)
    assert "\n" not in message
    assert "pretrained: false" in message and "pretrained=<path" in message


def test_unknown_names_list_valid_ones():
    with pytest.raises(SaltsegError, match="unknown model 'resnet35'.*resnet34.*frrn_b.*unet"):
        create_model("resnet35")
    with pytest.raises(SaltsegError, match="unknown timm encoder 'resnet35'"):
        create_model("unet", encoder="resnet35")
    with pytest.raises(
        SaltsegError, match=r"unknown argument\(s\) scse for model 'unet'; valid: .*scse_encoder"
    ):
        create_model("unet", scse=True)
    with pytest.raises(SaltsegError, match="unknown FRRN layout 'c'"):
        create_model("frrn", layout="c")
    with pytest.raises(SaltsegError, match="dropout must be in"):
        create_model("unet", encoder="resnet18", dropout=1.5)
    with pytest.raises(SaltsegError, match="width multiplier must be > 0"):
        create_model("frrn_b", width=0)
    with pytest.raises(SaltsegError, match="needs a 'name'"):
        create_model({"encoder": "resnet18"})


def test_config_objects_and_overrides():
    class ModelConfig(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="allow")
        name: str = "unet"

    config = ModelConfig(encoder="resnet18", decoder_width=0.25, classifier=True)
    model = create_model(config, hypercolumn=True)
    assert model.config["encoder"] == "resnet18"
    assert model.config["classifier"] and model.config["hypercolumn"]
    assert create_model({"name": "frrn_a", "width": 0.125}).config["layout"] == "a"


def test_list_and_cli():
    names = list_models()
    assert names[:5] == PRESET_NAMES and {"unet", "frrn"} <= set(names)
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert len(lines) == len(describe_models())
    for name in PRESET_NAMES:
        assert any(line.split()[0] == name and len(line.split()) > 3 for line in lines)


def test_other_timm_encoder_with_scse():
    model = create_model(
        "unet", encoder="mobilenetv3_small_050", scse_encoder=True, hypercolumn=True
    )
    assert not hasattr(model.encoder.model, "return_layers")
    out = model(torch.randn(2, 1, 101, 101))
    assert out["mask"].shape == (2, 1, 101, 101)
    assert model.hypercolumn_channels == sum(model.decoder_channels)


def test_architecture_state_dict_keys_unchanged():
    assert _keys_digest(create_model("frrn", width=0.125)) == (321, "e258804272ff900d")
    plain = create_model("unet", encoder="resnet18", decoder_width=0.25)
    assert _keys_digest(plain) == (182, "aa2a4a1531bc3f0b")
    full = _tiny_unet(side_outputs=True, hypercolumn=True, scse_decoder=True)
    assert _keys_digest(full) == (232, "fef2eb09ecdac488")


def test_every_model_accepts_pretrained_false():
    for name in ["frrn", "frrn_a", "frrn_b"]:
        model = create_model(name, width=0.125, pretrained=False)
        assert model.config["pretrained"] is False
        assert create_model(model.config).config == model.config
    assert _tiny_unet(pretrained=False).config["pretrained"] is False


def test_frrn_has_no_imagenet_weights():
    with pytest.raises(SaltsegError, match="frrn has no pretrained weights.*pretrained: false"):
        create_model("frrn_b", width=0.125, pretrained=True)


def test_frrn_local_weights_file(tmp_path):
    torch.manual_seed(0)
    trained = create_model("frrn_a", width=0.125)
    path = tmp_path / "frrn.pth"
    torch.save({"state_dict": {f"model.{k}": v for k, v in trained.state_dict().items()}}, path)
    torch.manual_seed(1)
    loaded = create_model("frrn_a", width=0.125, pretrained=path)
    assert loaded.config["pretrained"] == str(path)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, trained.state_dict()[key]), key
    with pytest.raises(SaltsegError, match="frrn expects"):
        create_model("frrn_a", width=0.25, pretrained=path)
    with pytest.raises(SaltsegError, match="does not hold weights for this frrn"):
        create_model("frrn_b", width=0.125, pretrained=path)
    with pytest.raises(SaltsegError, match="not found"):
        create_model("frrn", pretrained=tmp_path / "missing.pth")


def test_pretrained_must_be_bool_or_path():
    assert check_pretrained("unet", Path("w.pth")) == "w.pth"
    with pytest.raises(SaltsegError, match="pretrained must be true, false or a weights file"):
        create_model("frrn", pretrained=1)


def test_presets_are_frozen_dataclasses():
    assert list(PRESETS) == PRESET_NAMES
    preset = PRESETS["frrn_b"]
    assert isinstance(preset, ModelPreset) and preset.architecture == "frrn"
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset.architecture = "unet"
    with pytest.raises(TypeError):
        preset.kwargs["layout"] = "a"
    model = create_model("frrn_b", width=0.125)
    assert {k: model.config[k] for k in preset.kwargs} == dict(preset.kwargs)
    assert describe_models()["frrn_b"] == preset.description


def test_base_crops_maps_and_passes_other_outputs():
    class Probe(SegmentationModel):
        name = "probe"

        def __init__(self) -> None:
            super().__init__()
            self.in_chans, self.stride, self.seen = 1, 8, None

        def forward_padded(self, x):
            self.seen = tuple(x.shape)
            return {"mask": x, "aux": [x, x], "cls": x.mean((2, 3))}

    probe = Probe()
    x = torch.randn(2, 1, 13, 16)
    out = probe(x)
    assert probe.seen == (2, 1, 16, 16)
    assert torch.equal(out["mask"], x) and all(torch.equal(a, x) for a in out["aux"])
    assert out["cls"].shape == (2, 1)


def test_standardize_evens_out_each_tile_and_leaves_extra_channels():
    torch.manual_seed(0)
    tile = torch.rand(3, 1, 16, 16)
    extra = torch.full((3, 1, 16, 16), 0.7)
    out = standardize(torch.cat([0.2 * tile + 0.5, extra], dim=1))
    std, mean = torch.std_mean(0.2 * tile + 0.5, dim=(2, 3), keepdim=True)
    assert torch.allclose(out[:, :1], (0.2 * tile + 0.5 - mean) / (std + 0.05), atol=1e-6)
    assert torch.allclose(out[:, :1].mean((2, 3)), torch.zeros(3, 1), atol=1e-6)
    assert torch.equal(out[:, 1:], extra)
    # A constant tile comes out as zeros, not as noise or NaN.
    flat = standardize(torch.full((1, 1, 8, 8), 0.3))
    assert torch.allclose(flat, torch.zeros(1, 1, 8, 8), atol=1e-5)


@pytest.mark.parametrize("name", ["unet", "frrn"])
def test_tile_norm_makes_the_model_blind_to_brightness(name):
    kwargs = {"encoder": "resnet18", "decoder_width": 0.25} if name == "unet" else {"width": 0.125}
    torch.manual_seed(0)
    model = create_model(name, tile_norm=True, **kwargs).eval()
    torch.manual_seed(0)
    plain = create_model(name, **kwargs).eval()
    x = torch.rand(2, 1, 40, 40) * 0.5
    with torch.no_grad():
        shifted, base = model(x + 0.3)["mask"], model(x)["mask"]
        assert torch.allclose(shifted, base, atol=1e-4)
        assert not torch.allclose(plain(x + 0.3)["mask"], plain(x)["mask"], atol=1e-4)
    rebuilt = create_model(model.config, pretrained=False)
    assert rebuilt.tile_norm and rebuilt.config["tile_norm"]
    assert not plain.tile_norm and plain.config["tile_norm"] is False
    for bad in ("yes", 1):
        with pytest.raises(SaltsegError, match="tile_norm must be true or false"):
            create_model(name, tile_norm=bad, **kwargs)
