import json
import subprocess
import sys

import pytest
import torch

from clitools import last_json, run
from pyrogen.cli import main


SMALL = ["--epochs", "2", "--limit", "300", "--latent-dim", "4", "--hidden", "32", "--batch-size",
         "50", "--no-progress", "--device", "cpu"]


def test_train_evaluate_sample_resume(capsys, tmp_path):
    run_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", "vae", "--dataset", "digits", "--out", run_dir, *SMALL)
    assert code == 0, err
    summary = last_json(out)
    assert summary["epochs"] == 2 and summary["binarize"] == "dynamic"

    code, out, err = run(capsys, "evaluate", run_dir, "--iw-samples", "50", "--device", "cpu")
    assert code == 0, err
    result = last_json(out)
    assert result["num_points"] == 300 and result["binarize"] == "dynamic"
    # the IS estimate is a tighter bound than the ELBO (up to Monte Carlo noise)
    assert result["log_likelihood"] > result["elbo"] - 0.1
    assert result["nll"] == pytest.approx(-result["log_likelihood"])
    assert json.loads((run_dir / "evaluation.json").read_text()) == result
    # --inductor compiles the chunks; the same draws give the same estimate
    code, out, err = run(capsys, "evaluate", run_dir, "--iw-samples", "50", "--device", "cpu",
                         "--inductor")
    assert code == 0, err
    assert last_json(out)["log_likelihood"] == pytest.approx(result["log_likelihood"], abs=1e-4)

    code, out, err = run(capsys, "sample", run_dir, "--num", "9", "--out", tmp_path / "s.png",
                         "--device", "cpu")
    assert code == 0, err
    assert (tmp_path / "s.png").stat().st_size > 0

    code, out, err = run(capsys, "train", "vae", "--resume", run_dir, "--epochs", "3",
                         "--no-progress", "--device", "cpu")
    assert code == 0, err
    assert last_json(out)["epochs"] == 3


def test_train_with_weight_averaging_then_evaluate_the_average(capsys, tmp_path):
    from pyrogen.cli import load_data
    from pyrogen.infer import elbo
    from pyrogen.families import load_run

    run_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", "vae", "--out", run_dir, "--ema-decay", "0.9", *SMALL)
    assert code == 0, err
    assert json.loads((run_dir / "config.json").read_text())["train"]["ema_decay"] == 0.9
    code, out, err = run(capsys, "evaluate", run_dir, "--iw-samples", "20", "--device", "cpu")
    assert code == 0, err
    reported = last_json(out)["elbo"]
    # evaluate scores the averaged weights: recompute its test ELBO with either set
    scores = {}
    for averaged in (True, False):
        model, config = load_run(run_dir, "best", "cpu", averaged=averaged)
        torch.manual_seed(config.seed)
        batches = [(b.x,) for b in load_data(config).test.batches(100, seed=config.seed)]
        scores[averaged] = float(elbo(model.model, model.guide, batches).mean())
    assert scores[True] == pytest.approx(reported, abs=1e-4)
    assert scores[False] != pytest.approx(reported, abs=1e-4)


def test_same_seed_same_run(capsys, tmp_path):
    losses = []
    for name in ("a", "b"):
        code, out, err = run(capsys, "train", "vae", "--out", tmp_path / name, *SMALL)
        assert code == 0, err
        losses.append(last_json(out)["train_loss"])
    assert losses[0] == losses[1]


def test_an_existing_run_is_not_overwritten(capsys, tmp_path):
    run_dir = tmp_path / "run"
    assert run(capsys, "train", "vae", "--out", run_dir, *SMALL)[0] == 0
    before = (run_dir / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "vae", "--out", str(run_dir), *SMALL])
    assert exit_info.value.code == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == before


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "flow"], "invalid choice: 'flow'"),
        (["train", "vae", "--epochs", "0"], "expected a positive integer, got '0'"),
        (["train", "vae", "--hidden", "a,b"], "expected comma-separated integers"),
        (["train", "vae", "--lr", "-1"], "expected a positive number"),
        (["train", "vae", "--batch-schedule", "100-25"], "expected EPOCH:SIZE pairs"),
        (["train", "vae", "--batch-schedule", "100:25,50:10"], "the epochs must increase"),
        (["train", "gan", "--batch-schedule", "5:10"], "--batch-schedule is not an option of `pyrogen train gan`"),
        (["train", "gan", "--ema-decay", "0.99"], "--ema-decay is not an option of `pyrogen train gan` (it applies to `pyrogen train vae|cvae|dfcvae|classifier`)"),
        (["train", "vae", "--ema-decay", "1"], "expected a number in [0, 1)"),
        (["train", "vae", "--ema-decay", "x"], "expected a number in [0, 1) (0: none), got 'x'"),
        (["train", "vae", "--likelihood", "poisson"], "invalid choice: 'poisson'"),
        (["sample", "somewhere"], "the following arguments are required: --out"),
    ],
)
def test_bad_flags_get_argparse_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_errors_name_the_problem(capsys, tmp_path):
    code, _, err = run(capsys, "train", "vae", "--dataset", "mnist", "--data-dir", tmp_path, *SMALL)
    assert code == 1 and "train-images-idx3-ubyte" in err and str(tmp_path) in err
    code, _, err = run(capsys, "train", "vae", "--binarize", "none", "--out", tmp_path / "r", *SMALL)
    assert code == 1 and "needs binary data" in err
    code, _, err = run(capsys, "evaluate", tmp_path / "nothing")
    assert code == 1 and "does not exist" in err


def test_python_dash_m_and_help():
    for argv in (["--help"], ["train", "--help"], ["evaluate", "--help"], ["sample", "--help"]):
        result = subprocess.run([sys.executable, "-m", "pyrogen", *argv], capture_output=True, text=True)
        assert result.returncode == 0 and "usage: pyrogen" in result.stdout
    assert "--iw-samples" in subprocess.run(
        [sys.executable, "-m", "pyrogen", "evaluate", "--help"], capture_output=True, text=True
    ).stdout


@pytest.mark.parametrize("options", [
    ["--likelihood", "bernoulli"],
    ["--likelihood", "gaussian", "--objective", "iwae", "--num-particles", "2"],
    ["--likelihood", "continuous-bernoulli", "--objective", "meanfield"],
], ids=["bernoulli", "gaussian-iwae", "cbernoulli-meanfield"])
def test_diagnose_writes_a_report_arviz_can_read(capsys, tmp_path, options):
    import pandas as pd

    from pyrogen.diagnostics._arviz import arviz
    from pyrogen.diagnostics.report import REPORT_FILES

    run_dir = tmp_path / "run"
    small = [a for a in SMALL if a not in ("--epochs", "2")] + ["--epochs", "1"]
    code, out, err = run(capsys, "train", "vae", "--out", run_dir, *small, *options)
    assert code == 0, err
    report = tmp_path / "report"
    code, out, err = run(capsys, "diagnose", run_dir, "--num-points", "12", "--num-samples", "100",
                         "--num-predictive", "5", "--out", report, "--device", "cpu")
    assert code == 0, err
    result = last_json(out)
    assert "khat_threshold" in out.splitlines()[2]  # the printed table comes first
    assert result["num_points"] == 12 and result["khat_threshold"] == pytest.approx(0.5)
    assert sorted(p.name for p in report.iterdir()) == sorted(REPORT_FILES)
    summary = pd.read_csv(report / "summary.csv")
    assert dict(zip(summary["name"], summary["value"]))["num_samples"] == 100
    points = pd.read_csv(report / "points.csv", index_col="obs")
    assert len(points) == 12 and list(points["khat"]) == sorted(points["khat"], reverse=True)
    assert set(points["label"]) <= set(range(10))
    idata = arviz().from_netcdf(report / "inference_data.nc")
    assert idata.posterior["z"].dims == ("chain", "draw", "obs", "latent")
    assert idata.posterior["z"].shape == (1, 100, 12, 4)
    assert list(idata.training_history["epoch"].values) == [1]


def test_diagnose_bad_flags(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["diagnose", str(tmp_path), "--num-samples", "1"])
    assert e.value.code == 2
    assert "expected an integer >= 2" in capsys.readouterr().err
    code, _, err = run(capsys, "diagnose", tmp_path / "missing", "--device", "cpu")
    assert code == 1 and "does not exist" in err


def test_version_is_one_number_in_one_place(capsys):
    """``pyrogen --version`` prints ``pyrogen.__version__``, which the installed distribution
    ``pyrogen-vi`` (the name ``pyrogen`` on the package index is another project) carries."""
    import importlib.metadata

    import pyrogen
    from pyrogen.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.split()[:2] == ["pyrogen", pyrogen.__version__]
    assert importlib.metadata.version("pyrogen-vi") == pyrogen.__version__


def test_evaluate_ais_bounds_the_likelihood_and_says_how(capsys, tmp_path):
    run_dir = tmp_path / "run"
    code, _, err = run(capsys, "train", "vae", "--dataset", "digits", "--out", run_dir, *SMALL[:2],
                       "--limit", "100", *SMALL[4:])
    assert code == 0, err
    code, out, err = run(capsys, "evaluate", run_dir, "--iw-samples", "200", "--ais", "60",
                         "--ais-chains", "4", "--device", "cpu")
    assert code == 0, err
    result = last_json(out)
    found = result["ais"]
    assert found["steps"] == 60 and found["chains"] == 4 and found["schedule"] == "sigmoid"
    assert "lower bound" in found["estimator"] and found["stderr"] > 0
    # two estimates of the same log-likelihood: AIS and IS-200 agree within a nat here
    assert abs(found["log_likelihood"] - result["log_likelihood"]) < 1.0
    assert found["log_likelihood"] > result["elbo"] - 0.5
    assert found["observation"] == "the model's own likelihood p(x | z)"
    # the same decoder under N(x(z), sigma^2 I), on the first 20 test points, with BDMC
    code, out, err = run(capsys, "evaluate", run_dir, "--iw-samples", "10", "--ais", "20",
                         "--ais-chains", "2", "--ais-observation", "gaussian", "--bdmc", "4",
                         "--limit", "20", "--device", "cpu")
    assert code == 0, err
    result = last_json(out)
    assert result["num_points"] == 20 and result["limit"] == 20
    found = result["ais"]
    assert found["observation"].startswith("N(x(z), sigma^2 I)") and found["sigma"] in (0.025, 0.05, 0.1, 0.2, 0.4)
    assert found["bdmc"]["points"] == 4 and found["bdmc"]["upper"] > found["bdmc"]["lower"]


def test_evaluate_ais_gives_a_generator_a_gaussian_observation_model(capsys, tmp_path):
    run_dir = tmp_path / "gan"
    code, _, err = run(capsys, "train", "gan", "--dataset", "digits", "--out", run_dir, "--epochs", "1",
                       "--limit", "100", "--no-progress", "--device", "cpu")
    assert code == 0, err
    code, out, err = run(capsys, "evaluate", run_dir, "--ais", "10", "--ais-chains", "2")
    assert code == 0, err
    found = last_json(out)["ais"]
    assert found["observation"].startswith("N(x(z), sigma^2 I)") and found["sigma"] in (0.025, 0.05, 0.1, 0.2, 0.4)
    assert found["sigma_scores"][str(found["sigma"])] == max(found["sigma_scores"].values())
    assert "validation" in found["sigma_rule"] or "training" in found["sigma_rule"]
    assert "bdmc" not in found
    # a generator's own x = G(z) has no density: the model's likelihood is refused, by name
    code, out, err = run(capsys, "evaluate", run_dir, "--ais", "10", "--ais-observation", "model")
    assert code != 0 and "gives x = G(z) exactly" in err and "Traceback" not in err
    # nor has it a likelihood to importance-sample: --iw-samples is refused, by name
    code, out, err = run(capsys, "evaluate", run_dir, "--ais", "10", "--iw-samples", "100")
    assert code != 0 and "--iw-samples sets the importance samples" in err and "a gan run has none" in err
    code, out, err = run(capsys, "evaluate", run_dir, "--inductor")
    assert code != 0 and "--inductor compiles the importance-sampled" in err and "Traceback" not in err


def test_evaluate_ais_is_refused_where_there_is_no_likelihood_to_anneal(capsys, tmp_path):
    run_dir = tmp_path / "mixture"
    code, _, err = run(capsys, "train", "mixture", "--dataset", "digits", "--out", run_dir, "--epochs", "2",
                       "--limit", "100", "--num-components", "3", "--no-progress", "--device", "cpu")
    assert code == 0, err
    code, out, err = run(capsys, "evaluate", run_dir, "--ais", "10")
    assert code != 0 and "--ais anneals over continuous latents with HMC; a mixture's latent" in err
    assert "Traceback" not in err and not (run_dir / "evaluation.json").exists()
    for argv, message in ((["--ais", "10", "--ais-observation", "gaussian"],
                           "--ais-observation gaussian needs an unconditional decoder"),
                          (["--bdmc", "5"], "give --ais too"),
                          (["--ais-observation", "gaussian"], "give --ais too")):
        code, out, err = run(capsys, "evaluate", run_dir, *argv)
        assert code != 0 and message in err, (argv, err)
        assert "Traceback" not in err and not (run_dir / "evaluation.json").exists()
