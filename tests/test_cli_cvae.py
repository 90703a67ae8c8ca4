import json

import pytest
from PIL import Image

from clitools import last_json, run
from pyrogen.cli import main

SMALL = ["--epochs", "2", "--limit", "300", "--latent-dim", "4", "--hidden", "32", "--batch-size",
         "50", "--no-progress", "--device", "cpu"]


@pytest.mark.parametrize("condition", ["prior-network", "encoder-decoder", "class-mean"])
def test_label_cvae_trains_evaluates_samples_a_label_and_diagnoses(capsys, tmp_path, condition):
    run_dir = tmp_path / condition
    code, out, err = run(capsys, "train", "cvae", "--condition", condition, "--baseline-epochs", "2",
                         "--out", run_dir, *SMALL)
    assert code == 0, err
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert ("baseline_train_loss" in history[0]) == (condition == "prior-network")
    code, out, err = run(capsys, "evaluate", run_dir, "--iw-samples", "20", "--device", "cpu")
    assert code == 0, err
    result = last_json(out)
    assert result["conditional_on"] == "class label"
    assert result["log_likelihood"] > result["elbo"] - 0.1
    assert ("baseline_nll" in result) == (condition == "prior-network")
    code, out, err = run(capsys, "sample", run_dir, "--label", "7", "--num", "16",
                         "--out", tmp_path / "sevens.png", "--device", "cpu")
    assert code == 0, err
    assert last_json(out)["label"] == 7 and Image.open(tmp_path / "sevens.png").size[0] > 8
    code, out, err = run(capsys, "diagnose", run_dir, "--num-points", "20", "--num-samples", "20",
                         "--num-predictive", "5", "--device", "cpu")
    assert code == 0, err
    assert (run_dir / "diagnostics-test" / "inference_data.nc").is_file()


def test_quadrant_cvae_completes_test_images(capsys, tmp_path):
    run_dir = tmp_path / "q"
    code, out, err = run(capsys, "train", "cvae", "--condition", "prior-network", "--quadrants", "2",
                         "--baseline-epochs", "1", "--out", run_dir, *SMALL)
    assert code == 0, err
    assert (run_dir / "completions.png").is_file()
    code, out, err = run(capsys, "evaluate", run_dir, "--iw-samples", "20", "--device", "cpu")
    result = last_json(out)
    assert result["conditional_on"] == "2 visible quadrants"
    # the bound is on the 32 hidden pixels of an 8x8 digit, not all 64
    assert result["bits_per_dim"] == pytest.approx(result["nll"] / (32 * 0.6931471805599453))
    code, out, err = run(capsys, "sample", run_dir, "--num", "6", "--completions", "2",
                         "--out", tmp_path / "c.png", "--device", "cpu")
    assert code == 0, err
    assert Image.open(tmp_path / "c.png").size[0] > 6 * 8  # six images per row
    code, out, err = run(capsys, "sample", run_dir, "--label", "3", "--out", tmp_path / "x.png",
                         "--device", "cpu")
    assert code == 1 and "label-conditioned" in err


@pytest.mark.parametrize("argv,message", [
    (["train", "vae", "--quadrants", "2"], "--quadrants is not an option of `pyrogen train vae` (it applies to `pyrogen train cvae`)"),
    (["train", "cvae", "--condition", "class-mean", "--quadrants", "1"], "cannot take --quadrants"),
    (["train", "cvae", "--arch", "conv"], "--arch is not an option of `pyrogen train cvae`"),
    (["train", "cvae", "--quadrants", "4"], "invalid choice"),
    (["train", "cvae", "--condition", "nope"], "invalid choice"),
], ids=["vae", "class-mean", "arch", "quadrants", "condition"])
def test_bad_cvae_flags_get_argparse_errors(capsys, argv, message):
    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err
