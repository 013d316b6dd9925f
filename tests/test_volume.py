"""Section and cube inference: windows and blending, scaling, readers, writers, CLI, errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import segyio
from typer.testing import CliRunner

from saltseg.cli import app
from saltseg.errors import SaltsegError
from saltseg.inference.ensemble import Ensemble
from saltseg.volume import (
    RunSpec,
    Scaling,
    VolumeSettings,
    open_volume,
    predict_array,
    predict_file,
    predict_sections,
    window_weights,
)
from saltseg.volume.scaling import apply_clip, resample
from saltseg.volume.store import Accumulator
from tests.test_inference import data, run  # noqa: F401  (the tiny trained run)

SEGY = Path(__file__).resolve().parents[1].parent / "shared" / "segy-sample"
SAMPLES = ["f3.sgy", "f3-withdead.sgy", "volve-line-il10117.sgy"]


@pytest.fixture
def segy_sample():
    if not SEGY.is_dir():
        pytest.skip(f"SEG-Y sample not found at {SEGY}")
    return SEGY


def pointwise(windows):
    """A model without context: the result must not depend on the windows at all."""
    return 1 / (1 + np.exp(-8 * (windows - 0.5)))


def scaled(array, low=1, high=99):
    lo, hi = np.percentile(array, [low, high])
    return apply_clip(array, lo, hi)


# --- windows and blending -------------------------------------------------------------------


@pytest.mark.parametrize("blend", ["gaussian", "pyramid", "flat"])
@pytest.mark.parametrize("overlap", [0.0, 0.5, 0.8])
@pytest.mark.parametrize("shape", [(2, 250, 333), (1, 40, 7), (1, 101, 101), (1, 2, 2)])
def test_identity_through_windows_gives_back_the_input(blend, overlap, shape):
    sections = np.random.default_rng(0).random(shape, dtype=np.float32)
    for margin in (0, 13):
        out = predict_sections(sections, lambda w: w, overlap=overlap, blend=blend, margin=margin)
        assert out.shape == sections.shape
        np.testing.assert_allclose(out, sections, atol=1e-5)  # edges and corners included


def test_weights_are_positive_and_peak_in_the_centre():
    for blend in ("gaussian", "pyramid"):
        weights = window_weights(101, blend)
        assert weights.min() > 0 and weights[50, 50] == weights.max() == 1
        assert weights[0, 0] <= weights[0, 50] < weights[50, 50]
    with pytest.raises(SaltsegError, match="unknown blending"):
        window_weights(101, "cosine")


def test_windows_without_overlap_are_the_tiles():
    section = np.random.default_rng(1).random((1, 202, 303), dtype=np.float32)
    calls = []

    def model(windows):
        calls.append(windows.copy())
        return windows * 0 + windows.mean(axis=(1, 2), keepdims=True)  # depends on the window

    out = predict_sections(section, model, overlap=0.0, blend="flat")
    tiles = np.concatenate(calls)
    assert len(tiles) == 6
    expected = section[0].reshape(2, 101, 3, 101).mean(axis=(1, 3))
    np.testing.assert_allclose(out[0, ::101, ::101], expected, rtol=1e-5)


def test_a_dimension_under_two_samples_is_refused():
    with pytest.raises(SaltsegError, match="1 x 50 samples"):
        predict_sections(np.zeros((1, 1, 50), np.float32), lambda w: w)
    with pytest.raises(SaltsegError, match="overlap"):
        predict_sections(np.zeros((1, 9, 9), np.float32), lambda w: w, overlap=1.0)


# --- scaling and directions -----------------------------------------------------------------


def test_section_scaling_and_resampling_round_trip():
    section = np.random.default_rng(2).normal(0, 3000, (300, 150)).astype(np.float32)
    out = predict_array(section, model=lambda w: w)
    np.testing.assert_allclose(out, scaled(section), atol=1e-5)
    out = predict_array(section, model=lambda w: w, settings=VolumeSettings(resample=2.0))
    np.testing.assert_allclose(out, scaled(section), atol=1e-5)
    given = predict_array(
        section, model=lambda w: w, settings=VolumeSettings(scaling=Scaling(clip=(-1000.0, 1000.0)))
    )
    np.testing.assert_allclose(given, apply_clip(section, -1000, 1000), atol=1e-5)
    assert resample(resample(section, 451, axis=0), 300, axis=0).shape == section.shape


def test_per_line_statistics_scale_each_line_alone():
    cube = np.random.default_rng(3).normal(size=(3, 20, 60)).astype(np.float32)
    cube[1] *= 100
    settings = VolumeSettings(directions=("inline",), scaling=Scaling(per_line=True))
    out = predict_array(cube, model=lambda w: w, settings=settings)
    for i in range(3):
        np.testing.assert_allclose(out[i], scaled(cube[i]), atol=1e-5)


def test_cube_directions_average():
    cube = np.random.default_rng(4).normal(size=(6, 9, 70)).astype(np.float32)

    def by_direction(names):
        settings = VolumeSettings(directions=names, slab_mb=0.001)
        return predict_array(cube, model=pointwise, settings=settings)

    inline, crossline = by_direction(("inline",)), by_direction(("crossline",))
    both = by_direction(("inline", "crossline"))
    np.testing.assert_allclose(inline, pointwise(scaled(cube)), atol=1e-5)
    np.testing.assert_allclose(both, (inline + crossline) / 2, atol=1e-6)
    three = by_direction(("inline", "crossline", "depth"))
    np.testing.assert_allclose(three, pointwise(scaled(cube)), atol=1e-5)


def test_bad_amplitudes_and_settings_are_refused():
    with pytest.raises(SaltsegError, match="constant"):
        predict_array(np.full((50, 50), 7.0), model=lambda w: w)
    nan = np.zeros((50, 50))
    nan[3, 3] = np.nan
    with pytest.raises(SaltsegError, match="NaN"):
        predict_array(nan, model=lambda w: w)
    with pytest.raises(SaltsegError, match="unknown direction"):
        VolumeSettings(directions=("diagonal",)).check()
    with pytest.raises(SaltsegError, match="percentiles"):
        Scaling(percentiles=(99, 1))
    with pytest.raises(SaltsegError, match="2D section has one direction"):
        predict_array(
            np.eye(30), model=lambda w: w, settings=VolumeSettings(directions=("crossline",))
        )


# --- explicit file I/O of slabs -----------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 7, 9), (4, 6, 1100)])  # short runs and long ones
def test_file_accumulator_matches_one_in_memory_along_each_axis(shape, tmp_path):
    rng = np.random.default_rng(10)
    on_file = Accumulator(shape, tmp_path / "sums.f32").create()
    in_memory = Accumulator(shape)
    for axis in (0, 1, 2, 1, 0):
        n = shape[axis]
        for start, stop in [(0, 1), (1, max(2, n // 2)), (max(2, n // 2), n)]:
            other = [s for i, s in enumerate(shape) if i != axis]
            values = rng.normal(size=(stop - start, *other)).astype(np.float32)
            for acc in (on_file, in_memory):
                acc.add(axis, start, stop, values)
    expected = in_memory.array
    assert np.array_equal(np.fromfile(on_file.path, np.float32).reshape(shape), expected)
    assert np.array_equal(on_file.read(1, 3), expected[1:3])
    cells = np.array([0, 1, 2, 7, 5, 6, shape[0] * shape[1] - 1])
    assert np.array_equal(on_file.read_cells(cells), expected.reshape(-1, shape[2])[cells])
    assert on_file.read_cells(np.array([], int)).shape == (0, shape[2])


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", ["<f4", ">f4", "<i2"])
def test_npy_slabs_are_read_without_a_memory_map(order, dtype, tmp_path):
    cube = np.random.default_rng(11).normal(0, 100, (4, 5, 6)).astype(dtype)
    np.save(tmp_path / "cube.npy", np.asarray(cube, order=order))
    volume = open_volume(tmp_path / "cube.npy")
    for axis in range(3):
        for start, stop in [(0, 1), (1, 3)]:
            index = [slice(None)] * 3
            index[axis] = slice(start, stop)
            expected = np.moveaxis(cube[tuple(index)].astype(np.float32), axis, 0)
            assert np.array_equal(volume.read(axis, start, stop), expected)


# --- the trained run through the ensemble --------------------------------------------------


def test_section_mode_matches_the_ensemble_on_tiles(run):  # noqa: F811
    ensemble = Ensemble.load([run])
    section = np.random.default_rng(5).random((202, 101), dtype=np.float32)
    settings = VolumeSettings(overlap=0.0, blend="flat", scaling=Scaling(clip=(0.0, 1.0)))
    spec = RunSpec([str(run)], tta=("none",))
    out = predict_array(section, spec, settings)
    tiles = ensemble.predict(section.reshape(2, 101, 101), None, ("none",))["mask"]
    np.testing.assert_allclose(out, tiles.reshape(202, 101), atol=1e-5)


@pytest.mark.parametrize("name", SAMPLES)
def test_segy_samples_read_predict_and_write(name, segy_sample, run, tmp_path):  # noqa: F811
    source = segy_sample / name
    out = tmp_path / "out"
    spec = RunSpec([str(run)], tta=("none",))
    settings = VolumeSettings(overlap=0.0)  # few windows: a fast test
    summary = predict_file(source, spec, out, settings, progress=False)
    volume = open_volume(source)
    probs = np.load(out / "probabilities.npy")
    mask = np.load(out / "mask.npy")
    if volume.is_2d:
        assert probs.shape == (volume.shape[2], volume.shape[1])
        assert (out / "section.png").is_file() and (out / "probabilities.png").is_file()
    else:
        assert probs.shape == volume.shape
        assert np.isnan(probs[~volume.live]).all() and not mask[~volume.live].any()
    live = probs[~np.isnan(probs)]
    assert ((live >= 0) & (live <= 1)).all()
    assert (
        summary["threshold"] == json.loads((out / "predict-volume.json").read_text())["threshold"]
    )
    with (
        segyio.open(source, ignore_geometry=True) as a,
        segyio.open(out / "probabilities.sgy", ignore_geometry=True) as b,
    ):
        assert a.tracecount == b.tracecount and np.array_equal(a.samples, b.samples)
        assert a.text[0] == b.text[0]
        assert all(dict(a.header[i]) == dict(b.header[i]) for i in range(a.tracecount))
        assert b.bin[segyio.BinField.Format] == 5 and str(b.format) == "4-byte IEEE float"
        cells = volume.segy.cell_of_trace
        expected = probs.reshape(-1, probs.shape[-1])[cells] if not volume.is_2d else probs.T
        np.testing.assert_allclose(b.trace.raw[:], expected, atol=1e-6)
    if name == "f3.sgy":
        with segyio.open(out / "mask.sgy") as m, segyio.open(source) as a:
            assert np.array_equal(m.ilines, a.ilines) and np.array_equal(m.xlines, a.xlines)


def _little_endian_copy(source: Path, dst: Path) -> None:
    """``source`` rewritten in little-endian byte order, headers and traces unchanged."""
    with segyio.open(source, ignore_geometry=True) as f:
        spec = segyio.spec()
        spec.format, spec.samples, spec.tracecount = int(f.format), f.samples, f.tracecount
        spec.ext_headers, spec.endian = f.ext_headers, "little"
        with segyio.create(str(dst), spec) as out:
            out.text[0] = f.text[0]
            out.bin = f.bin
            for i in range(f.tracecount):
                out.header[i] = f.header[i]
                out.trace[i] = f.trace[i]


def test_little_endian_segy_reads_and_writes_like_big_endian(segy_sample, run, tmp_path):  # noqa: F811
    source = segy_sample / "f3-withdead.sgy"
    little = tmp_path / "little.sgy"
    _little_endian_copy(source, little)
    raw = little.read_bytes()[3224:3226]
    assert int.from_bytes(raw, "little") in {1, 5} and int.from_bytes(raw, "big") >= 256
    spec = RunSpec([str(run)], tta=("none",))
    settings = VolumeSettings(overlap=0.0, directions=("inline",))
    predict_file(source, spec, tmp_path / "big-out", settings, progress=False)
    summary = predict_file(little, spec, tmp_path / "little-out", settings, progress=False)
    assert summary["input"]["endian"] == "little"
    np.testing.assert_array_equal(
        np.load(tmp_path / "little-out" / "probabilities.npy"),
        np.load(tmp_path / "big-out" / "probabilities.npy"),
    )
    written = tmp_path / "little-out" / "probabilities.sgy"
    assert int.from_bytes(written.read_bytes()[3224:3226], "little") == 5
    with (
        segyio.open(little, ignore_geometry=True, endian="little") as a,
        segyio.open(written, ignore_geometry=True, endian="little") as b,
    ):
        assert a.tracecount == b.tracecount
        assert all(dict(a.header[i]) == dict(b.header[i]) for i in range(a.tracecount))


def test_output_folder_rules(run, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    out.mkdir()
    source = out / "cube.npy"  # the input may sit in the output folder
    np.save(source, np.random.default_rng(6).normal(size=(3, 4, 30)).astype(np.float32))
    (out / "notes.txt").write_text("mine")
    settings = VolumeSettings(directions=("inline",))
    spec = RunSpec([str(run)], tta=("none",))
    predict_file(source, spec, out, settings, progress=False)
    before = (out / "probabilities.npy").read_bytes()
    with pytest.raises(SaltsegError, match="--overwrite"):
        predict_file(source, spec, out, settings, progress=False)
    predict_file(source, spec, out, settings, overwrite=True, progress=False)
    assert (out / "probabilities.npy").read_bytes() == before
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == [
        "cube.npy",
        "mask.npy",
        "notes.txt",
        "predict-volume.json",
        "probabilities.npy",
    ]
    manifest = json.loads((out / "predict-volume.json").read_text())
    assert manifest["outputs"] == ["mask.npy", "probabilities.npy"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "mask.npy").write_bytes(b"the user's own file")
    with pytest.raises(SaltsegError, match="not written by predict-volume"):
        predict_file(source, spec, other, settings, overwrite=True, progress=False)
    assert (other / "mask.npy").read_bytes() == b"the user's own file"
    earlier = out / "probabilities.npy"  # an earlier output as input: never replaced
    with pytest.raises(SaltsegError, match="would be replaced"):
        predict_file(earlier, spec, out, settings, overwrite=True, progress=False)
    assert (out / "probabilities.npy").read_bytes() == before


def test_stale_outputs_of_an_earlier_call_are_removed(run, tmp_path):  # noqa: F811
    source = tmp_path / "line.npy"
    np.save(source, np.random.default_rng(9).normal(size=(40, 60)).astype(np.float32))
    out = tmp_path / "out"
    spec = RunSpec([str(run)], tta=("none",))
    predict_file(source, spec, out, formats="npy,png", progress=False)
    assert (out / "section.png").is_file()
    predict_file(source, spec, out, formats="npy", overwrite=True, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [
        "mask.npy",
        "predict-volume.json",
        "probabilities.npy",
    ]


def test_bad_inputs_are_one_line_errors(run, tmp_path, segy_sample):  # noqa: F811
    spec = RunSpec([str(run)], tta=("none",))
    text = tmp_path / "notes.sgy"
    text.write_text("not seismic at all\n" * 300)
    truncated = tmp_path / "cut.sgy"
    truncated.write_bytes((segy_sample / "f3.sgy").read_bytes()[:-1000])
    constant = tmp_path / "flat.npy"
    np.save(constant, np.ones((4, 4, 30), np.float32))
    cases = [
        (text, {}, "not a readable SEG-Y"),
        (truncated, {}, "not a readable SEG-Y"),
        (segy_sample / "f3.sgy", {"iline_byte": 190}, "--iline-byte 190"),
        (segy_sample / "f3.sgy", {"iline_byte": 1}, "check --iline-byte"),
        (constant, {}, "constant"),
        (tmp_path / "absent.sgy", {}, "does not exist"),
    ]
    for source, kwargs, message in cases:
        out = tmp_path / f"out-{source.stem}"
        with pytest.raises(SaltsegError, match=message):
            predict_file(source, spec, out, progress=False, **kwargs)
        assert not out.exists()


def test_cli_predict_volume(run, tmp_path):  # noqa: F811
    image = tmp_path / "line.png"
    from PIL import Image

    Image.fromarray(np.random.default_rng(7).integers(0, 256, (130, 240), np.uint8)).save(image)
    out = tmp_path / "out"
    args = ["predict-volume", str(image), "--run", str(run), "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(app, [*args, "--tta", "none", "--blend", "pyramid"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "predict-volume.json").read_text())
    assert summary["global_clip"] == [0.0, 255.0] and summary["settings"]["blend"] == "pyramid"
    assert np.load(out / "probabilities.npy").shape == (130, 240)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and result.output.startswith("error: ")
    assert "--overwrite" in result.output and len(result.output.strip().splitlines()) == 1
    result = CliRunner().invoke(app, [*args, "--overwrite", "--overlap", "1.5"])
    assert result.exit_code == 2 and "overlap" in result.output


@pytest.mark.slow
def test_two_processes_equal_one(run, tmp_path, segy_sample):  # noqa: F811
    spec = RunSpec([str(run)], tta=("none",))
    source = segy_sample / "f3-withdead.sgy"
    predict_file(source, spec, tmp_path / "one", progress=False)
    predict_file(source, spec, tmp_path / "two", devices=2, progress=False)
    one, two = (np.load(tmp_path / d / "probabilities.npy") for d in ("one", "two"))
    np.testing.assert_allclose(one, two, atol=1e-6)


def test_too_little_disk_is_refused_before_writing(run, tmp_path, monkeypatch):  # noqa: F811
    import shutil
    from collections import namedtuple

    source = tmp_path / "cube.npy"
    np.save(source, np.random.default_rng(8).normal(size=(3, 4, 30)).astype(np.float32))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6, 1000))
    with pytest.raises(SaltsegError, match="not enough disk space"):
        predict_file(source, RunSpec([str(run)]), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
