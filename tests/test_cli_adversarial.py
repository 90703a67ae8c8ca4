"""`pyrogen train gan|aae|ali` end to end on a slice of digits, and the commands around them."""

import json

import numpy as np
import pytest

from clitools import last_json, run
from resumetools import assert_same_state
from pyrogen.families import load_run
from pyrogen.train import load_checkpoint

SMALL = ["--limit", "200", "--epochs", "2", "--batch-size", "25", "--latent-dim", "4",
         "--hidden", "32", "--lr", "2e-4", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    from pyrogen.cli import main

    out = tmp_path_factory.mktemp("clf") / "run"
    assert main(["train", "classifier", "--epochs", "2", "--limit", "300", "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0
    return out


@pytest.mark.parametrize("model,options,players", [
    ("gan", ["--generator-loss", "regularised", "--g-steps", "2"], ("discriminator", "generator")),
    ("gan", ["--generator-loss", "minimax", "--no-batch-norm", "--d-steps", "2"], ("discriminator", "generator")),
    ("aae", ["--encoder", "gaussian", "--prior", "mixture", "--recon-weight", "2"], ("discriminator", "autoencoder")),
    ("ali", ["--ali-loss", "complete", "--generator", "gaussian", "--g-steps", "2"],
     ("discriminator", "encoder-generator")),
    ("ali", ["--ali-loss", "swapped", "--encoder", "delta"], ("discriminator", "encoder-generator")),
], ids=["gan-regularised", "gan-minimax-nobn", "aae-mixture", "ali-complete", "ali-swapped"])
def test_train_evaluate_sample(capsys, tmp_path, classifier, model, options, players):
    run_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", model, *SMALL, *options, "--out", run_dir)
    assert code == 0, err
    summary = last_json(out)
    assert all(f"loss_{p}" in summary for p in players)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and records[-1]["binarize"] == "none"
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert set(state["optimizer"]) == set(players) and state["config"]["betas"] == [0.5, 0.999]
    loaded, config = load_run(run_dir, "last")
    assert config.model == model

    code, out, err = run(capsys, "evaluate", run_dir, "--features", classifier, "--device", "cpu")
    assert code == 0, err
    result = last_json(out)
    for key in ("frechet_distance", "frechet_floor", "precision", "recall", "classes_covered", "class_kl"):
        assert key in result, key
    assert result["frechet_floor"] < result["frechet_distance"]
    assert 0 <= result["classes_covered"] <= 1
    if model != "gan":
        assert 0 < result["reconstruction_ratio"] and 0 <= result["linear_probe_accuracy"] <= 1
    code, out, err = run(capsys, "sample", run_dir, "--num", "9", "--out", tmp_path / "s.png", "--device", "cpu")
    assert code == 0 and (tmp_path / "s.png").is_file(), err


@pytest.mark.parametrize("model", ["aae", "ali"])
def test_reconstruct_encode_and_diagnose(capsys, tmp_path, model):
    run_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", model, *SMALL, "--encoder", "gaussian", "--out", run_dir)
    assert code == 0, err
    code, out, err = run(capsys, "reconstruct", run_dir, "--num", "8", "--out", tmp_path / "r.png", "--device", "cpu")
    assert code == 0 and (tmp_path / "r.png").is_file(), err
    code, out, err = run(capsys, "encode", run_dir, "--out", tmp_path / "codes", "--device", "cpu")
    assert code == 0, err
    codes = np.load(tmp_path / "codes.npz")
    assert codes["loc"].shape == (last_json(out)["num_points"], 4) and (codes["scale"] > 0).all()
    assert codes["label"].shape == codes["index"].shape
    code, out, err = run(capsys, "diagnose", run_dir, "--num-points", "20", "--num-samples", "50",
                         "--num-predictive", "2", "--device", "cpu")
    assert code == 0, err
    summary = last_json(out)
    # the surrogate Gaussian likelihood makes the importance weights finite
    assert np.isfinite(summary["log_likelihood_mean"]) and summary["latent_dims"] == 4
    assert ("surrogate_scale" in summary) == (model in ("aae", "ali"))  # both have Delta generators here


def test_resume_an_adversarial_run(capsys, tmp_path):
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert run(capsys, "train", "gan", *SMALL, "--epochs", "3", "--out", whole)[0] == 0
    assert run(capsys, "train", "gan", *SMALL, "--epochs", "1", "--out", part)[0] == 0
    code, out, err = run(capsys, "train", "gan", "--resume", part, "--epochs", "3", "--device", "cpu",
                         "--no-progress")
    assert code == 0, err
    a = load_checkpoint(whole / "checkpoints" / "last.pt")["model_state"]
    b = load_checkpoint(part / "checkpoints" / "last.pt")["model_state"]
    assert_same_state(a, b)


@pytest.mark.parametrize("argv,message", [
    (["train", "gan", "--kl-warmup", "3"],
     "--kl-warmup is not an option of `pyrogen train gan` (it applies to `pyrogen train vae|cvae|dfcvae`)"),
    (["train", "vae", "--g-steps", "2"],
     "--g-steps is not an option of `pyrogen train vae` (it applies to `pyrogen train gan|aae|ali`)"),
    (["train", "gan", "--prior", "mixture"], "--prior is not an option of `pyrogen train gan` (it applies to `pyrogen train aae`)"),
    (["train", "ali", "--ali-loss", "complete"], "Gaussian encoder and a Gaussian generator"),
    (["train", "gan", "--betas", "0.5"], "two numbers"),
    (["evaluate", "RUN"], "no likelihood to estimate"),
    (["diagnose", "RUN"], "no Gaussian encoder"),
    (["reconstruct", "RUN", "--out", "r.png"], "has no encoder"),
], ids=["kl-warmup", "g-steps-vae", "prior-gan", "complete-delta", "betas", "evaluate-features",
        "diagnose-gan", "reconstruct-gan"])
def test_bad_options(capsys, tmp_path, argv, message):
    if "RUN" in argv:
        run_dir = tmp_path / "gan"
        assert run(capsys, "train", "gan", *SMALL, "--epochs", "1", "--out", run_dir)[0] == 0
        argv = [str(run_dir) if a == "RUN" else a for a in argv]
    try:
        code, _, err = run(capsys, *argv, "--device", "cpu")
    except SystemExit as e:
        code, err = e.code, capsys.readouterr()[1]
    assert code != 0
    assert message in err


def test_evaluate_features_adds_quality_metrics_to_a_vae(capsys, tmp_path, classifier):
    run_dir = tmp_path / "vae"
    code, out, err = run(capsys, "train", "vae", "--limit", "200", "--epochs", "1", "--latent-dim", "4",
                         "--hidden", "32", "--binarize", "none", "--likelihood", "continuous-bernoulli",
                         "--device", "cpu", "--no-progress", "--out", run_dir)
    assert code == 0, err
    code, out, err = run(capsys, "evaluate", run_dir, "--iw-samples", "2", "--features", classifier,
                         "--num-samples", "50", "--device", "cpu")
    assert code == 0, err
    result = last_json(out)
    assert "nll" in result and result["num_samples"] == 50
    assert 0 <= result["linear_probe_accuracy"] <= 1 and result["reconstruction_ratio"] > 0


def test_watch_classes_logs_the_classes_of_the_samples(capsys, tmp_path, classifier):
    run_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", "gan", *SMALL, "--watch-classes", classifier, "--out", run_dir)
    assert code == 0, err
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for record in records:
        assert 0 <= record["sample_classes_covered"] <= 1 and record["sample_class_kl"] >= 0
    for argv, message in (
            (["gan", *SMALL, "--watch-classes", run_dir], "--watch-classes"),
            (["vae", "--watch-classes", classifier], "--watch-classes is not an option of `pyrogen train vae`")):
        try:
            code, _, err = run(capsys, "train", *argv, "--out", tmp_path / "other")
        except SystemExit as e:
            code, err = e.code, capsys.readouterr()[1]
        assert code != 0 and message in err and "Traceback" not in err, err
