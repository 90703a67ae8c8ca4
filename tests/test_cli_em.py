import json

import pytest
import torch

from resumetools import assert_same_weights
from clitools import last_json, run
from pyrogen.cli import main
from pyrogen.families import load_run


@pytest.mark.parametrize("options", [
    ["--component", "bernoulli"],
    ["--component", "gaussian", "--covariance", "diag"],
    ["--component", "gaussian", "--covariance", "full", "--reg-covar", "1e-3"],
    ["--component", "bernoulli", "--em", "generalised", "--em-steps", "2", "--lr", "0.05"],
], ids=["bernoulli", "gaussian-diag", "gaussian-full", "generalised"])
def test_mixture_fits_by_em_evaluates_samples_and_diagnoses(capsys, tmp_path, options):
    run_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", "mixture", "--num-components", "5", "--epochs", "15",
                         "--out", run_dir, "--device", "cpu", *options)
    assert code == 0, err
    summary = last_json(out)
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in history]
    assert summary["train_loss"] == losses[-1] and summary["iterations"] == len(history)
    if "generalised" not in options:  # exact EM never lowers the likelihood
        assert all(b <= a + 1e-4 for a, b in zip(losses, losses[1:]))
    assert (run_dir / "components.png").is_file()
    model, config = load_run(run_dir)
    assert config.em == ("generalised" if "generalised" in options else "exact")
    code, out, err = run(capsys, "evaluate", run_dir, "--iw-samples", "2", "--device", "cpu")
    assert code == 0, err
    result = last_json(out)
    # the guide is the exact posterior: the ELBO and the IS estimate are both log p(x)
    assert result["elbo"] == pytest.approx(result["log_likelihood"], abs=1e-3)
    code, out, err = run(capsys, "sample", run_dir, "--num", "8", "--out", tmp_path / "s.png",
                         "--device", "cpu")
    assert code == 0, err
    code, out, err = run(capsys, "diagnose", run_dir, "--num-points", "20", "--num-samples", "10",
                         "--num-predictive", "2", "--device", "cpu")
    assert code == 0, err
    assert last_json(out)["share_khat_above_threshold"] == 0.0  # every weight is p(x)


def test_mixture_refuses_what_em_cannot_do(capsys, tmp_path):
    code, out, err = run(capsys, "train", "mixture", "--binarize", "dynamic", "--out",
                         tmp_path / "a", "--device", "cpu")
    assert code == 1 and "binarize='static'" in err
    for flag, value in (("--kl-warmup", "3"), ("--ema-decay", "0.9")):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "mixture", flag, value, "--out", str(tmp_path / "c"), "--device", "cpu"])
        assert exit_info.value.code == 2
        assert f"{flag} is not an option of `pyrogen train mixture`" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
    code, out, err = run(capsys, "train", "mixture", "--lr", "0.1", "--out", tmp_path / "d",
                         "--device", "cpu")  # exact EM has no optimiser
    assert code == 1 and "lr=0.1: does not apply to exact EM" in err
    with pytest.raises(SystemExit):
        main(["train", "vae", "--num-components", "3"])
    assert "--num-components is not an option of `pyrogen train vae` (it applies to `pyrogen train mixture`)" in capsys.readouterr().err


def test_classifier_trains_and_reports_accuracy(capsys, tmp_path):
    run_dir = tmp_path / "clf"
    code, out, err = run(capsys, "train", "classifier", "--epochs", "8", "--batch-size", "50",
                         "--out", run_dir, "--device", "cpu", "--no-progress")
    assert code == 0, err
    code, out, err = run(capsys, "evaluate", run_dir, "--device", "cpu")
    assert code == 0, err
    result = last_json(out)
    assert result["accuracy"] > 0.85 and result["nll"] > 0
    model, _ = load_run(run_dir)
    assert model.predict(torch.zeros(2, 1, 8, 8)).shape == (2,)


def test_dfcvae_trains_on_a_classifiers_features_and_resumes(capsys, tmp_path):
    clf = tmp_path / "clf"
    code, out, err = run(capsys, "train", "classifier", "--epochs", "2", "--batch-size", "50",
                         "--limit", "300", "--out", clf, "--device", "cpu", "--no-progress")
    assert code == 0, err
    dfc = tmp_path / "dfc"
    small = ["--latent-dim", "4", "--hidden", "32", "--batch-size", "50", "--limit", "300",
             "--device", "cpu", "--no-progress"]
    code, out, err = run(capsys, "train", "dfcvae", "--features", clf, "--epochs", "2",
                         "--out", dfc, *small)
    assert code == 0, err
    config = json.loads((dfc / "config.json").read_text())
    assert config["model_config"]["layers"] == ["relu1", "relu2", "relu3"]
    assert config["model_config"]["feature_weight"] == 0.5
    code, out, err = run(capsys, "train", "dfcvae", "--resume", dfc, "--epochs", "3",
                         "--device", "cpu", "--no-progress")
    assert code == 0, err
    assert last_json(out)["epochs"] == 3
    code, out, err = run(capsys, "evaluate", dfc, "--iw-samples", "5", "--device", "cpu")
    assert code == 0, err
    result = last_json(out)
    assert result["feature_space"] and "bits_per_dim" not in result
    code, out, err = run(capsys, "sample", dfc, "--num", "4", "--out", tmp_path / "s.png",
                         "--device", "cpu")
    assert code == 0, err
    code, out, err = run(capsys, "train", "dfcvae", "--features", dfc, "--out", tmp_path / "x",
                         *small)
    assert code == 1 and "must be a `pyrogen train classifier` run" in err
    with pytest.raises(SystemExit):
        main(["train", "dfcvae", "--out", str(tmp_path / "y")])
    assert "needs --features RUN" in capsys.readouterr().err


def test_monte_carlo_em_trains_a_vae_evaluates_and_resumes_exactly(capsys, tmp_path):
    small = ["--objective", "mcem", "--mcem-proposals", "8", "--mcmc-steps", "2", "--limit", "200",
             "--latent-dim", "3", "--hidden", "16", "--batch-size", "50", "--device", "cpu",
             "--lr-schedule", "constant",  # a cosine schedule of 2 epochs is not the first 2 of 3
             "--no-progress"]
    code, out, err = run(capsys, "train", "vae", "--epochs", "3", "--out", tmp_path / "whole", *small)
    assert code == 0, err
    code, out, err = run(capsys, "train", "vae", "--epochs", "2", "--out", tmp_path / "part", *small)
    assert code == 0, err
    code, out, err = run(capsys, "train", "vae", "--resume", tmp_path / "part", "--epochs", "3",
                         "--device", "cpu", "--no-progress")
    assert code == 0, err
    whole, _ = load_run(tmp_path / "whole", "last")
    resumed, _ = load_run(tmp_path / "part", "last")
    assert_same_weights(whole, resumed)
    code, out, err = run(capsys, "evaluate", tmp_path / "whole", "--iw-samples", "10", "--device", "cpu")
    assert code == 0, err
    result = last_json(out)
    assert result["log_likelihood"] > result["elbo"] - 0.5
    code, out, err = run(capsys, "train", "vae", "--objective", "mcem", "--beta", "0.5",
                         "--out", tmp_path / "bad", "--device", "cpu")
    assert code == 1 and "no KL term" in err
