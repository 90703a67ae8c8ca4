"""Divergence: a bad step is detected, the epoch rolled back and rerun at a lower learning
rate, the site or player named; faults are injected at a chosen step (a poisoned loss, a
poisoned gradient, a poisoned discriminator output)."""

import math

import pytest
import torch

from resumetools import assert_same_weights

from pyrogen.data import load_dataset
from pyrogen.models import GAN, VAE
from pyrogen.train import DivergenceError, TrainConfig, Trainer, load_checkpoint, read_metrics
from pyrogen.train.divergence import WARMUP, DivergenceGuard, nonfinite_site


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", binarize="dynamic", limit=300)


def vae_trainer(data, run_dir=None, init_seed=0, **options):
    torch.manual_seed(init_seed)
    vae = VAE(data.shape, latent_dim=4, hidden=(32,))
    options = {"epochs": 3, "batch_size": 50, "device": "cpu", "jit": False, **options}
    return Trainer(vae, data, TrainConfig(**options), run_dir, progress=False)


def gan_trainer(data, run_dir=None, **options):
    torch.manual_seed(0)
    gan = GAN(data.shape, latent_dim=4, arch="mlp", hidden=(32,))
    options = {"epochs": 3, "batch_size": 25, "lr": 2e-4, "betas": [0.5, 0.999], "device": "cpu",
               "model": "gan", **options}
    return Trainer(gan, data, TrainConfig(**options), run_dir, progress=False)


def poison_loss_once(trainer, at_step, factor):
    """Multiply the loss of global step ``at_step`` (1-based) by ``factor``, the first time only."""
    optimise, done = trainer.optimise, []

    def poisoned(loss, *args, **kwargs):
        if trainer.global_step + 1 == at_step and not done:
            done.append(True)
            loss = loss * factor
        return optimise(loss, *args, **kwargs)

    trainer.optimise = poisoned


# --------------------------------------------------------------------------- the band
def test_guard_flags_non_finite_values_and_departures_from_the_band():
    guard = DivergenceGuard(band=20)
    assert guard.bad(math.nan, "loss") == "became nan"
    assert guard.bad(math.inf, "loss") == "became inf"
    values = [100 + (i % 7) for i in range(WARMUP)]
    for v in values:
        assert guard.bad(v, "loss") is None
        guard.accept(v, "loss")
    # median 103, spread 6 but at least 10% of the median: 20 x 10.3 either side
    assert guard.bad(300.0, "loss") is None
    assert "outside the band" in guard.bad(400.0, "loss")
    assert "outside the band" in guard.bad(-200.0, "loss")
    # another loss (another player) has its own history
    assert guard.bad(400.0, "discriminator loss") is None


def test_guard_flags_a_blow_up_before_any_history_and_follows_a_falling_loss():
    guard = DivergenceGuard(band=20)
    guard.accept(500.0, "loss")
    assert "rose to" in guard.bad(500.0 + 20 * 500 + 1, "loss")
    for v in torch.linspace(500, 90, 300).tolist():  # a loss falling fast is never divergence
        assert guard.bad(v, "loss") is None
        guard.accept(v, "loss")
    off = DivergenceGuard(band=0)
    off.accept(1.0, "loss")
    assert off.bad(1e30, "loss") is None and off.bad(math.nan, "loss") == "became nan"


def test_guard_state_round_trips():
    guard = DivergenceGuard()
    for v in range(30):
        guard.accept(float(v), "a")
    other = DivergenceGuard()
    other.load_state_dict(guard.state_dict())
    assert other.bad(1e4, "a") == guard.bad(1e4, "a") and other.first == {"a": 0.0}


def test_nonfinite_site_names_the_site_and_parameter():
    torch.manual_seed(0)
    vae = VAE((1, 8, 8), latent_dim=2, hidden=(8,))
    x = torch.rand(5, 1, 8, 8).round()
    assert nonfinite_site(vae.model, vae.guide, x) is None
    last = [m for m in vae.model.decoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias[3] = math.inf
    assert nonfinite_site(vae.model, vae.guide, x) == "model site x: logits inf"


# --------------------------------------------------------------------------- rollback
def test_a_poisoned_step_rolls_back_and_equals_a_run_resumed_at_half_the_rate(data, tmp_path):
    """300 points in batches of 50: 5 steps per epoch (50 for validation). Step 7 (epoch 2) gets
    a loss 1e6 times too large; epoch 2 is rolled back to its start and rerun at half the rate.
    The result is bit-identical to a run stopped after epoch 1 and resumed with --lr halved."""
    steps = len(data.train) // 50
    faulty = vae_trainer(data, tmp_path / "faulty")
    poison_loss_once(faulty, steps + 2, 1e6)
    history = faulty.fit()
    assert [r["epoch"] for r in history] == [1, 2, 3] == [r["epoch"] for r in read_metrics(tmp_path / "faulty")]
    [event] = history[1]["rolled_back"]
    assert event["epoch"] == 2 and event["lr_scale"] == 0.5
    assert event["reason"].startswith("the loss rose to") and f"(global step {steps + 2})" in event["reason"]
    assert [r["lr"] for r in history] == [1e-3, 5e-4, 5e-4]
    assert "rolled_back" not in history[0] and "rolled_back" not in history[2]

    vae_trainer(data, tmp_path / "clean", epochs=1).fit()
    resumed = vae_trainer(data, tmp_path / "clean", lr=5e-4, init_seed=9)
    resumed.resume()
    resumed.fit()
    assert_same_weights(faulty.model, resumed.model)
    assert [r["train_loss"] for r in faulty.history] == [r["train_loss"] for r in resumed.history]
    # the reduction is kept: a resumed faulty run goes on at half the rate
    state = load_checkpoint(tmp_path / "faulty" / "checkpoints" / "last.pt")
    assert state["lr_scale"] == 0.5 and len(state["rollbacks"]) == 1
    more = vae_trainer(data, tmp_path / "faulty", epochs=4, init_seed=9)
    more.resume()
    assert more.fit()[-1]["lr"] == 5e-4


def test_a_poisoned_gradient_names_the_parameters(data):
    """A NaN gradient at step 3 makes the decoder's weights NaN; step 4's loss is NaN and the
    rollback names the non-finite parameters."""
    trainer = vae_trainer(data, epochs=2)
    weight = [m for m in trainer.model.model.decoder.modules() if isinstance(m, torch.nn.Linear)][-1].weight
    poisoned = []

    def hook(grad):
        if trainer.global_step + 1 == 3 and not poisoned:
            poisoned.append(True)
            return grad * math.nan
        return grad

    weight.register_hook(hook)
    history = trainer.fit()
    [event] = history[0]["rolled_back"]
    assert event["reason"] == "the loss became nan at epoch 1, step 4 (global step 4)"
    assert event["site"].startswith("non-finite parameters: model.decoder.")
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_a_nan_likelihood_names_the_model_site(data):
    trainer = vae_trainer(data, epochs=1)
    last = [m for m in trainer.model.model.decoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    calls = []

    def poison(module, inputs, output):  # one forward pass with an infinite logit
        if trainer.global_step + 1 == 2 and len(calls) < 2:
            calls.append(True)  # the step's forward, and the site search's
            output = output.clone()
            output[:, 0] = math.inf
        return output

    last.register_forward_hook(poison)
    [event] = trainer.fit()[0]["rolled_back"]
    assert "the loss became" in event["reason"] and "(global step 2)" in event["reason"]
    assert event["site"] == "model site x: logits inf"


def test_a_poisoned_discriminator_names_the_player_and_rolls_back(data, tmp_path):
    trainer = gan_trainer(data, tmp_path)
    trainer.model.discriminator.register_forward_hook(
        lambda m, i, out: out * math.nan if trainer.global_step + 1 == 5 and not trainer.rollbacks else out)
    history = trainer.fit()
    [event] = history[0]["rolled_back"]
    assert event["reason"].startswith("the discriminator loss became nan at epoch 1")
    assert len(history) == 3 and all("rolled_back" not in r for r in history[1:])
    assert history[0]["lr"] == 1e-4  # both players at half the rate
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert all(torch.isfinite(v).all() for v in best["model_state"].values() if v.is_floating_point())


def test_persistent_divergence_stops_after_max_rollbacks_without_a_bad_checkpoint(data, tmp_path):
    trainer = vae_trainer(data, tmp_path, lr=1e3, max_rollbacks=2)
    with pytest.raises(DivergenceError, match=r"^training diverged: the loss rose to .* 2 rollback\(s\) "
                       r"with the learning rates multiplied by 0.5 each did not help "
                       r"\(--max-rollbacks 2\); try a smaller --lr; no checkpoint had been written yet$"):
        trainer.fit()
    assert not (tmp_path / "checkpoints" / "best.pt").exists()


def test_default_band_never_fires_on_a_healthy_run(data):
    for trainer in (vae_trainer(data, epochs=4, lr=2e-3), gan_trainer(data, epochs=3)):
        history = trainer.fit()
        assert not any("rolled_back" in r for r in history) and trainer.lr_scale == 1.0
