"""The family registry: every family's command line agrees with its Python API, trains one short
epoch the same way through both, and shows only its own options."""

import argparse
import inspect
import re

import pyro
import pytest
import torch

from clitools import last_json, run
from pyrogen.cli_parser import build_parser
from pyrogen.data import DATASETS, load_dataset
from pyrogen.families import TRAIN_OPTIONS, families, get, load_run, names
from pyrogen.families.options import show
from pyrogen.train import TrainConfig, Trainer, load_checkpoint

ALL = names()
#: a small model and a short epoch for every family (model options, as a user would type them)
SMALL = {
    "vae": {"latent_dim": 4, "hidden": [32]},
    "cvae": {"latent_dim": 4, "hidden": [32], "condition": "prior-network", "baseline_epochs": 1},
    "mixture": {"num_components": 3},
    "dfcvae": {"latent_dim": 4, "hidden": [32]},
    "classifier": {"channels": [8, 8, 8], "hidden": 16},
    "gan": {"latent_dim": 4, "hidden": [32]},
    "aae": {"latent_dim": 4, "hidden": [32]},
    "ali": {"latent_dim": 4, "hidden": [32]},
}
TRAIN = {"limit": 150, "epochs": 1, "batch_size": 25, "device": "cpu"}


def _parser(name):
    parser = build_parser()
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    return next(a for a in train._actions if isinstance(a, argparse._SubParsersAction)).choices[name]


def _cli_flags(value):
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def test_the_registry_names_every_facade_once():
    built_in = ("vae", "cvae", "mixture", "dfcvae", "classifier", "gan", "aae", "ali")
    assert names()[:len(built_in)] == built_in  # examples/custom_family.py may add its own after
    assert len({f.facade for f in families()}) == len(names())
    with pytest.raises(ValueError, match="model family must be one of"):
        get("flow")


@pytest.mark.parametrize("name", ALL)
def test_generic_defaults_are_the_facades_own(name):
    family = get(name)
    signature = inspect.signature(family.facade.__init__).parameters
    for option, value in family.defaults()["model"].items():
        default = signature[option].default
        assert value == (list(default) if isinstance(default, tuple) else default), option
    fields = TrainConfig()
    for option, value in family.defaults()["train"].items():
        expected = family.train_overrides.get(option, getattr(fields, option))
        if option != "binarize":
            assert value == expected, option


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("name", ALL)
def test_cli_defaults_are_the_python_defaults(name, dataset):
    """What `pyrogen train NAME --dataset D` builds and trains with is `get(NAME).defaults(D)`:
    the parser suppresses every default, so the command fills them from that one call."""
    family = get(name)
    parser = _parser(name)
    args = parser.parse_args(["--dataset", dataset])
    assert vars(args) == {"dataset": dataset}  # nothing typed, nothing filled by argparse
    settings = family.defaults(dataset)
    for option, value in family.dataset_defaults.get(dataset, {}).items():
        assert settings["model"].get(option, settings["train"].get(option)) == value
    help_text = " ".join(re.sub(r"-\n\s+", "-", parser.format_help()).split())
    for option, value in family.defaults()["model"].items():  # the help states the real defaults
        if value is not None:
            assert f"(default: {show(value)}" in help_text, option
        own = family.dataset_defaults.get(dataset, {})
        if option in own and own[option] != value:
            assert f"{dataset}: {show(own[option])}" in help_text, option


@pytest.mark.parametrize("name", ALL)
def test_help_lists_only_the_familys_own_options(name):
    family = get(name)
    help_text = _parser(name).format_help()
    ours = {o.cli for o in family.options} | {o.cli for g in family.train_groups() for o in TRAIN_OPTIONS.get(g, ())}
    for other in families():
        for option in other.options:
            if option.cli not in ours:
                assert option.cli + " " not in help_text and option.cli + "\n" not in help_text, (
                    f"{option.cli} of {other.name} in `pyrogen train {name} --help`")
    for group, options in TRAIN_OPTIONS.items():
        for option in options:
            if option.cli not in ours:
                assert option.cli + " " not in help_text, f"{option.cli} in `pyrogen train {name} --help`"


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    from pyrogen.cli import main

    out = tmp_path_factory.mktemp("features") / "clf"
    assert main(["train", "classifier", "--epochs", "1", "--limit", "150", "--channels", "8,8,8",
                 "--hidden", "16", "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    return out


@pytest.mark.parametrize("name", ALL)
def test_one_epoch_through_the_cli_equals_one_through_python(name, tmp_path, capsys, classifier_run):
    """The same family, data set and options through `pyrogen train` and through the facade,
    TrainConfig and Trainer of the Python API end with the same weights."""
    family = get(name)
    options = dict(SMALL[name])
    train_options = {k: v for k, v in TRAIN.items() if k in family.defaults()["train"]}
    if get(name).fit == "em":  # exact EM has no minibatches
        del train_options["batch_size"]
    argv = ["train", name, "--no-progress", "--out", tmp_path / "cli"]
    for key, value in {**options, **train_options}.items():
        option = next((o for o in family.options if o.name == key), None)
        argv += [option.cli if option else "--" + key.replace("_", "-"), _cli_flags(value)]
    if name == "dfcvae":
        argv += ["--features", classifier_run]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert last_json(out)["epochs"] == 1

    # the Python API: the family's settings for the data set, the facade, a TrainConfig, Trainer
    settings = family.defaults("digits")
    train = {**settings["train"], **train_options}
    data = load_dataset("digits", binarize=train["binarize"], limit=TRAIN["limit"])
    model_options = {**settings["model"], **options}
    pyro.set_rng_seed(train["seed"])
    if name == "dfcvae":
        classifier, _ = load_run(classifier_run, "best", "cpu")
        model = family.facade(data.shape, classifier, **model_options)
    elif name in ("cvae", "classifier"):
        model = family.facade(data.shape, num_classes=data.num_classes, **model_options)
    else:
        model = family.facade(data.shape, **model_options)
    config = TrainConfig(model=name, model_config={k: v for k, v in model.config.items() if k != "data_shape"},
                         **train)
    Trainer(model, data, config, tmp_path / "python", progress=False).fit()

    a = load_checkpoint(tmp_path / "cli" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "python" / "checkpoints" / "last.pt")
    assert a["config"] == b["config"]
    assert set(a["model_state"]) == set(b["model_state"])
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key


def test_resume_refuses_another_family_and_changed_model_options(tmp_path, capsys):
    run_dir = tmp_path / "vae"
    code, _, err = run(capsys, "train", "vae", "--latent-dim", "4", "--hidden", "16", "--limit", "100",
                       "--epochs", "1", "--device", "cpu", "--no-progress", "--out", run_dir)
    assert code == 0, err
    code, _, err = run(capsys, "train", "gan", "--resume", run_dir, "--device", "cpu")
    assert code == 1 and "trained a vae, not a gan" in err
    code, _, err = run(capsys, "train", "vae", "--resume", run_dir, "--hidden", "999", "--device", "cpu")
    assert code == 1 and "--hidden 999: the run was trained with 16, and a model option cannot change" in err
    code, _, err = run(capsys, "train", "vae", "--resume", run_dir, "--batch-size", "10", "--device", "cpu")
    assert code == 1 and "--batch-size 10: the run was trained with 50" in err  # the digits default
    code, _, err = run(capsys, "train", "vae", "--resume", run_dir, "--out", tmp_path / "other",
                       "--device", "cpu")
    assert code == 1 and "a resumed run continues in its own folder" in err
    # the same values as the run's are no change
    code, out, err = run(capsys, "train", "vae", "--resume", run_dir, "--hidden", "16", "--epochs", "2",
                         "--lr", "0.004", "--device", "cpu", "--no-progress")
    assert code == 0, err
    record = load_checkpoint(run_dir / "checkpoints" / "last.pt")["history"][-1]
    assert record["resumed_with"] == {"epochs": [1, 2], "lr": [0.002, 0.004]}
    # the digits default is a cosine schedule to 1e-5: epoch 2 of 2 starts half way down
    assert record["lr"] == pytest.approx(1e-5 + (0.004 - 1e-5) / 2)


def test_quality_failures_name_each_missed_bound():
    from pyrogen.families.base import quality_failures

    gan = get("gan")
    bounds = gan.quality["digits"]
    good = {"classes_covered": 1.0, "min_class_share": 0.05, "precision": 0.9, "recall": 0.9,
            "frechet_distance": 10.0, "frechet_floor": 10.0}
    assert quality_failures(gan, "digits", good) == []
    bad = dict(good, min_class_share=0.01, frechet_distance=10.0 * (bounds["fd_over_floor"] + 1))
    failures = quality_failures(gan, "digits", bad)
    assert len(failures) == 2
    assert failures[0].startswith("min_class_share = 0.01 (>= 0.03 wanted)")
    assert "fd_over_floor" in failures[1] and "<=" in failures[1]
    assert quality_failures(gan, "digits", {})  # a missing score is a failure, not a pass
    assert quality_failures(gan, "folder", {}) == []  # no bounds declared there


def test_per_dataset_takes_a_data_sets_own_values():
    from pyrogen.families.base import per_dataset

    defaults = per_dataset({"epochs": 1}, {"epochs": 2, "lr": 0.1}, fashion_mnist={"epochs": 3})
    assert defaults["digits"] == {"epochs": 1}
    assert defaults["mnist"] == defaults["binarized-mnist"] == {"epochs": 2, "lr": 0.1}
    assert defaults["fashion-mnist"] == {"epochs": 3, "lr": 0.1}
    with pytest.raises(ValueError, match=r"\['cifar'\] are not MNIST-sized"):
        per_dataset({}, {}, cifar={})
    # the bare cvae on an unlabelled data set completes the bottom halves
    assert get("cvae").defaults("binarized-mnist")["model"]["quadrants"] == 2
    assert get("cvae").defaults("mnist")["model"]["quadrants"] is None


def test_sample_quality_on_an_unlabelled_data_set_uses_the_classifiers_reading(classifier_run):
    """binarized-mnist has no labels: the class histogram of the samples is compared with the
    classifier's predictions on the real images, and the probe (which needs labels) is left out."""
    import dataclasses

    from pyrogen.families.base import Request
    from pyrogen.families.quality import quality
    from pyrogen.families.runs import load_classifier
    from pyrogen.models import AAE

    data = load_dataset("digits", limit=300)
    unlabelled = dataclasses.replace(
        data, num_classes=None,
        **{name: dataclasses.replace(getattr(data, name), labels=None) for name in ("train", "test")})
    clf = load_classifier(classifier_run, data, "cpu")
    request = Request(features=classifier_run, classifier=lambda: clf, num_samples=100)
    torch.manual_seed(0)
    model = AAE(data.shape, latent_dim=2, arch="mlp", hidden=(16,))
    scores = quality(request, model, unlabelled, unlabelled.test)
    assert scores["class_reference"] == "the classifier's reading of the real images"
    assert 0 <= scores["min_class_share"] <= 1 and "reconstruction_error" in scores
    assert "linear_probe_accuracy" not in scores
    labelled = quality(request, model, data, data.test)
    assert labelled["class_reference"] == "the data set's" and "linear_probe_accuracy" in labelled


@pytest.mark.parametrize("name", ALL)
def test_the_defaults_sweep_asks_evaluate_only_what_the_family_has(name, tmp_path, monkeypatch):
    """benchmarks/defaults_sweep.py scores a setting by ``pyrogen evaluate``: the importance-
    sampled likelihood only for a family that has one (evaluate refuses --iw-samples for a GAN,
    an AAE, ALI and the classifier), the sample-quality metrics for every sampler."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "defaults_sweep", Path(__file__).parents[1] / "benchmarks" / "defaults_sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    calls = []

    def fake(*argv, threads):
        calls.append(argv)
        return {"epochs": 1} if argv[0] == "train" else {"frechet_distance": 2.0, "frechet_floor": 1.0}

    monkeypatch.setattr(sweep, "_pyrogen", fake)
    args = sweep.parse_args(["--family", name, "--features", "CLF", "--out", str(tmp_path)])
    row = sweep.run_setting(args, 0, "--epochs 1")
    train, evaluate = calls
    assert train[:2] == ("train", name) and "--epochs" in train
    assert ("--iw-samples" in evaluate) == get(name).importance_sampled
    assert ("--features" in evaluate) == (name != "classifier")
    assert row["fd_over_floor"] == 2.0


def test_class_readings_separate_the_judge_the_decoder_and_the_prior(classifier_run):
    """benchmarks/class_readings.py: per class, the classifier's recall on real images (its
    own accuracy there), on the model's reconstructions and the share of the samples; a model
    that returns its input unchanged is read exactly as the real images."""
    import importlib.util
    from pathlib import Path

    from pyrogen.families.runs import load_classifier
    from pyrogen.models import VAE

    spec = importlib.util.spec_from_file_location(
        "class_readings", Path(__file__).parents[1] / "benchmarks" / "class_readings.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    data = load_dataset("digits", limit=300)
    clf = load_classifier(classifier_run, data, "cpu")
    x, y = data.test.images, data.test.labels
    torch.manual_seed(0)
    vae = VAE(data.shape, latent_dim=2, hidden=(16,)).eval()
    result = bench.readings(vae, clf, x, y, 10, num_samples=200)
    rows = result["classes"]
    assert sum(r["sample_share"] for r in rows) == pytest.approx(1.0)
    assert sum(r["reconstruction_share"] for r in rows) == pytest.approx(1.0)
    predicted = clf.predict(x)
    for r in rows:
        of_k = y == r["class"]
        assert r["real_recall"] == pytest.approx((predicted[of_k] == r["class"]).double().mean().item())

    class Identity:
        has_encoder = True

        def reconstruct(self, images):
            return images

        def sample(self, n):
            return x[:n]

    same = bench.readings(Identity(), clf, x, y, 10, num_samples=len(x))["classes"]
    assert all(r["reconstruction_recall"] == r["real_recall"] for r in same)
