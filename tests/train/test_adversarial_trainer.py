"""The alternating loop of the adversarial family: steps per player, checkpoints, resume, NaN."""

import pytest
import torch

from resumetools import assert_same_weights, stop_and_resume

from pyrogen.data import load_dataset
from pyrogen.models import AAE, ALI, GAN
from pyrogen.train import NonFiniteLossError, Trainer, TrainConfig, load_checkpoint, read_metrics
from pyrogen.families import load_run


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", limit=300)


def _model(name):
    if name == "gan":
        return GAN((1, 8, 8), latent_dim=4, arch="mlp", hidden=(32,), generator_loss="regularised")
    if name == "aae":
        return AAE((1, 8, 8), latent_dim=2, hidden=(32,), reg_weight=0.5)
    return ALI((1, 8, 8), latent_dim=2, arch="mlp", hidden=(32,), generator="gaussian", loss="complete")


def make(data, name, run_dir=None, init_seed=0, **options):
    torch.manual_seed(init_seed)
    options = {"epochs": 2, "batch_size": 25, "lr": 2e-4, "betas": [0.5, 0.999], "device": "cpu",
               "model": name, **options}
    return Trainer(_model(name), data, TrainConfig(**options), run_dir, progress=False)


@pytest.mark.parametrize("name", ["gan", "aae", "ali"])
def test_resume_equals_an_uninterrupted_run(data, tmp_path, name):
    whole = make(data, name, tmp_path / "whole", epochs=3, g_steps=2)
    whole.fit()
    resumed = stop_and_resume(lambda *a, **k: make(data, name, *a, **k), tmp_path / "stopped",
                              epochs=3, stop=1, g_steps=2)
    assert_same_weights(whole.model, resumed.model)
    for player, opt in whole.optimizers.items():
        a, b = opt.state_dict()["state"], resumed.optimizers[player].state_dict()["state"]
        assert all(torch.equal(a[i]["exp_avg"], b[i]["exp_avg"]) for i in a)
    keys = [k for k in whole.history[0] if k != "sec"]
    assert [[r[k] for k in keys] for r in whole.history] == [[r[k] for k in keys] for r in resumed.history]


def test_checkpoint_holds_both_players_optimisers_and_the_snapshot(data, tmp_path):
    trainer = make(data, "gan", tmp_path, epochs=1, g_steps=2)
    trainer.fit()
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert set(state["optimizer"]) == {"discriminator", "generator"}
    assert set(state["scheduler"]) == {"discriminator", "generator"}
    snap = state["step"]["snapshots"]["generator"]
    assert snap["z"].shape == (25, 4) and snap["x"].shape == (25, 1, 8, 8)
    assert state["step"]["snapshots"]["discriminator"] is None
    assert any(k.startswith("discriminator.") for k in state["model_state"])
    model, config = load_run(tmp_path, "last")
    assert isinstance(model, GAN) and config.g_steps == 2


@pytest.mark.parametrize("d_steps,g_steps", [(1, 1), (5, 5), (2, 3)])
def test_steps_per_player_per_iteration(data, d_steps, g_steps):
    trainer = make(data, "aae", epochs=1, d_steps=d_steps, g_steps=g_steps)
    calls = []
    for name, loss in trainer.step.losses.items():
        original = loss.differentiable_loss

        def counted(*args, _name=name, _orig=original, **kwargs):
            calls.append(_name)
            return _orig(*args, **kwargs)

        loss.differentiable_loss = counted
    record = trainer.fit()[-1]
    iteration = ["discriminator"] * d_steps + ["autoencoder"] * g_steps
    assert calls[: 2 * len(iteration)] == iteration * 2
    # the AAE's regularised player runs its steps on one minibatch: d_steps + 1 batches per iteration
    assert record["iterations_in_epoch"] == (300 // 25) // (d_steps + 1)
    assert record["steps"] == record["iterations"] * (d_steps + g_steps)


def test_loss_terms_are_logged_per_epoch(data, tmp_path):
    make(data, "ali", tmp_path, epochs=2, g_steps=2).fit()
    records = read_metrics(tmp_path)
    assert len(records) == 2
    for key in ("loss_discriminator", "loss_encoder-generator", "d_encoder", "d_generator",
                "eg_encoder", "eg_generator", "eg_kl", "eg_ratio", "iterations"):
        assert key in records[-1], key
    assert records[-1]["eg_kl"] > 0  # the second step of each iteration differs from the snapshot
    assert (tmp_path / "samples.png").is_file() and (tmp_path / "reconstructions.png").is_file()


def test_discriminator_learning_rate_and_betas(data):
    trainer = make(data, "gan", d_lr=1e-3)
    assert trainer.optimizers["discriminator"].param_groups[0]["lr"] == 1e-3
    assert trainer.optimizers["generator"].param_groups[0]["lr"] == 2e-4
    assert trainer.optimizers["generator"].param_groups[0]["betas"] == (0.5, 0.999)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data, tmp_path):
    trainer = make(data, "gan", tmp_path, epochs=3)
    loss = trainer.step.losses["generator"]
    good, calls = loss.differentiable_loss, {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        value = good(*args, **kwargs)
        return value * float("nan") if calls["n"] > 12 else value

    loss.differentiable_loss = poisoned
    with pytest.raises(NonFiniteLossError, match=r"generator loss became nan at epoch 2, iteration 13"):
        trainer.fit()
    kept = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert kept["epoch"] == 1
    assert len(read_metrics(tmp_path)) == 1


def test_iterations_per_epoch_cycle_through_fresh_shuffles(data):
    trainer = make(data, "gan", epochs=2, iterations_per_epoch=20, d_steps=2)
    history = trainer.fit()  # 300 points in batches of 25: 12 per pass, 40 needed per epoch
    assert [r["iterations_in_epoch"] for r in history] == [20, 20]
    assert history[-1]["iterations"] == 40 and history[-1]["steps"] == 40 * 3


def test_a_batch_schedule_is_refused_before_work(data):
    with pytest.raises(ValueError, match=r"batch_schedule=\[\[2, 10\]\]: does not apply to adversarial training"):
        make(data, "gan", batch_schedule=[[2, 10]])


def test_weight_averaging_is_refused_before_work(data):
    with pytest.raises(ValueError, match="ema_decay=0.99: does not apply to adversarial training"):
        make(data, "gan", ema_decay=0.99)


def test_a_checkpoint_of_the_old_layout_resumes_exactly(data, tmp_path):
    """Before the steps, the adversarial trainer kept its snapshots and iteration count beside
    the optimisers; such a checkpoint resumes as today's does."""
    whole = make(data, "gan", tmp_path / "whole", epochs=3, g_steps=2)
    whole.fit()
    make(data, "gan", tmp_path / "old", epochs=1, g_steps=2).fit()
    path = tmp_path / "old" / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    state.update(state.pop("step"))
    del state["closed_form_schedule"]
    torch.save(state, path)
    resumed = make(data, "gan", tmp_path / "old", epochs=3, g_steps=2)
    resumed.resume()
    assert resumed.step.iteration == whole.history[0]["iterations"]
    resumed.fit()
    assert_same_weights(whole.model, resumed.model)


def test_sample_diversity_against_closed_forms():
    from pyrogen.train.adversarial import mean_pairwise_distance

    # two points at distance 5, and three on a line: (1 + 2 + 1) * 2 / 6
    assert mean_pairwise_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(5.0)
    assert mean_pairwise_distance(torch.tensor([[0.0], [1.0], [2.0]])) == pytest.approx(4 / 3)
    assert mean_pairwise_distance(torch.zeros(5, 1, 2, 2)) == 0.0


def test_a_collapse_is_recorded_and_best_keeps_the_last_diverse_epoch(data, tmp_path):
    """A generator that stops drawing different images (its last layer zeroed after epoch 2)
    collapses: the record says so, and best.pt is epoch 2."""
    trainer = make(data, "gan", tmp_path, epochs=4)

    def collapse(trainer, record):
        if record["epoch"] == 2:
            with torch.no_grad():
                last = [m for m in trainer.model.model.modules() if isinstance(m, torch.nn.Linear)][-1]
                last.weight.zero_()
            trainer.step.peak_diversity = max(trainer.step.peak_diversity, 0.6)  # as a healthy run

    trainer.callbacks.append(collapse)
    history = trainer.fit()
    assert all("sample_diversity" in r for r in history)
    assert [bool(r.get("collapse")) for r in history] == [False, False, True, True]
    assert history[2]["sample_diversity"] < 0.1
    assert load_checkpoint(tmp_path / "checkpoints" / "best.pt")["epoch"] == 2


class ScriptedClassifier(torch.nn.Module):
    """Logits whose argmax follows a script, one entry per epoch: "uniform" (every class in
    turn), "skewed" (every class, class 0 a third of the time) or "one" (class 0 only)."""

    def __init__(self, script):
        super().__init__()
        self.script, self.calls = list(script), 0

    def forward(self, x):
        kind = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        n = len(x)
        labels = {"uniform": torch.arange(n) % 10,
                  "skewed": torch.where(torch.arange(n) % 3 == 0, 0, torch.arange(n) % 10),
                  "one": torch.zeros(n, dtype=torch.long)}[kind]
        return torch.nn.functional.one_hot(labels, 10).float()


def test_watched_classes_are_logged_lost_classes_are_a_collapse_and_best_has_least_class_kl(data, tmp_path):
    from pyrogen.train import AdversarialStep

    torch.manual_seed(0)
    config = TrainConfig(model="gan", epochs=4, batch_size=25, lr=2e-4, betas=[0.5, 0.999],
                         device="cpu", watch_classes="scripted")
    step = AdversarialStep(classifier=ScriptedClassifier(["skewed", "uniform", "skewed", "one"]))
    history = Trainer(_model("gan"), data, config, tmp_path, step=step, progress=False).fit()
    assert [r["sample_classes_covered"] for r in history] == [1.0, 1.0, 1.0, 0.1]
    kl = [r["sample_class_kl"] for r in history]
    assert kl[1] < kl[0] and kl[1] < kl[2]
    assert [bool(r.get("collapse")) for r in history] == [False, False, False, True]
    assert load_checkpoint(tmp_path / "checkpoints" / "best.pt")["epoch"] == 2


def test_watch_classes_without_a_classifier_is_refused(data):
    config = TrainConfig(model="gan", epochs=1, batch_size=25, device="cpu", watch_classes="clf")
    with pytest.raises(ValueError, match="names a classifier, but the step has none"):
        Trainer(_model("gan"), data, config, None, progress=False).fit()
