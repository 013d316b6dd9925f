import pandas as pd
from typer.testing import CliRunner

from saltseg.cli import app
from saltseg.rle import rle_decode


def test_demo_runs_every_stage(tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--n-train", "40", "--n-test", "12", "--no-progress"]
    args += ["--set", "trainer.epochs=1", "--set", "data.k=2", "--set", "model.decoder_width=0.25"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for stage in range(1, 6):
        assert f"[{stage}/5]" in result.output
    assert "with threshold" in result.output  # tuned by training
    submission = pd.read_csv(out / "predict" / "submission.csv", keep_default_na=False)
    test_ids = sorted(p.stem for p in (out / "data" / "test" / "images").glob("*.png"))
    assert sorted(submission["id"]) == test_ids
    assert all(rle_decode(r).shape == (101, 101) for r in submission["rle_mask"])
    assert (out / "run" / "oof_score.json").exists()
    assert (out / "run" / "postprocess.json").exists()
    assert "data:image/png;base64" in (out / "report.html").read_text()
    assert (out / "mosaic" / "mosaics.csv").exists()
    # Running it again replaces the previous demo rather than failing.
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
