"""The exponential moving average of the weights, against closed forms, and in the trainer."""

import math

import pytest
import torch

from resumetools import assert_same_weights, stop_and_resume

from pyrogen.data import load_dataset
from pyrogen.models import VAE
from pyrogen.families import load_run
from pyrogen.train import (
    ExponentialAverage,
    TrainConfig,
    Trainer,
    load_checkpoint,
    save_checkpoint,
)


def follow(values, decay, start=0.0):
    """Feed a scalar parameter the trajectory ``values``; return the average after each step."""
    theta = torch.tensor([start], dtype=torch.float64)
    average = ExponentialAverage({"theta": theta}, decay)
    out = []
    for v in values:
        theta.fill_(v)
        average.update()
        out.append(float(average.average["theta"]))
    return out


def test_the_ramp_is_a_closed_form_weighted_mean():
    # while (1 + t) / (10 + t) < decay, d_t = (1 + t) / (10 + t), so the product of the d_s
    # for s = t+1 .. T-1 telescopes to prod (s + 1) / (s + 10), and the weight of the start
    # value after T steps is T! 9! / (T + 9)!
    T, start = 6, 5.0
    averages = follow([0.0] * T, decay=0.999, start=start)
    for n, a in enumerate(averages, start=1):
        assert a == pytest.approx(start * math.factorial(n) * math.factorial(9) / math.factorial(n + 9))
    # a constant trajectory stays put: the weights sum to one
    assert follow([3.0] * 50, decay=0.9, start=3.0)[-1] == pytest.approx(3.0, abs=1e-12)


def test_steady_state_lag_on_a_linear_trajectory():
    # the EMA of theta_t = t with constant decay d lags by d / (1 - d) once the start is forgotten
    d = 0.9
    averages = follow([float(t) for t in range(600)], decay=d)
    assert averages[-1] == pytest.approx(599 - d / (1 - d), abs=1e-9)


def test_applied_swaps_the_average_in_and_restores_even_on_error():
    w = torch.nn.Parameter(torch.zeros(3))
    average = ExponentialAverage({"w": w}, 0.5)
    with torch.no_grad():
        w.fill_(1.0)
    average.update()  # d_0 = 0.1: 0.9 of the new value
    with average.applied():
        assert torch.allclose(w, torch.full((3,), 0.9))
    assert torch.equal(w, torch.ones(3))
    with pytest.raises(RuntimeError), average.applied():
        raise RuntimeError("boom")
    assert torch.equal(w, torch.ones(3))


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_bad_decay(decay):
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\)"):
        ExponentialAverage({"w": torch.zeros(1)}, decay)


# ---------------------------------------------------------------------- trainer
@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", binarize="dynamic", limit=300)


def make_trainer(data, run_dir=None, init_seed=0, **options):
    torch.manual_seed(init_seed)
    vae = VAE(data.shape, latent_dim=4, hidden=(32,))
    options = {"epochs": 3, "batch_size": 50, "device": "cpu", "ema_decay": 0.9, **options}
    return Trainer(vae, data, TrainConfig(**options), run_dir, progress=False)


def test_the_trainer_averages_every_step_and_validates_the_average(data, tmp_path):
    trainer = make_trainer(data, tmp_path / "run", validation_size=0.2)
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    history = trainer.fit()
    assert trainer.average.updates == history[-1]["steps"]
    own = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    # the validation loss is that of the averaged weights
    with trainer.averaged():
        averaged = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        assert trainer.evaluate_loss(trainer.data.valid) == history[-1]["valid_loss"]
    # after the block (and after fit) the model holds its own weights again
    assert all(torch.equal(own[k], v) for k, v in trainer.model.state_dict().items())
    assert any(not torch.equal(own[k], averaged[k]) for k in own)
    assert any(not torch.equal(start[k], averaged[k]) for k in own)
    # checkpoints hold both; load_run gives the average unless asked for the last weights
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["average"]["updates"] == history[-1]["steps"]
    model, _ = load_run(tmp_path / "run", "last")
    assert all(torch.equal(averaged[k], v) for k, v in model.state_dict().items())
    model, _ = load_run(tmp_path / "run", "last", averaged=False)
    assert all(torch.equal(own[k], v) for k, v in model.state_dict().items())


def test_without_ema_decay_there_is_no_average(data):
    trainer = make_trainer(data, ema_decay=0.0, epochs=1)
    trainer.fit()
    assert trainer.average is None
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with trainer.averaged():
        assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_resume_with_an_average_equals_an_uninterrupted_run(data, tmp_path):
    whole = make_trainer(data, tmp_path / "whole", epochs=4)
    whole.fit()
    resumed = stop_and_resume(lambda *a, **k: make_trainer(data, *a, **k), tmp_path / "stopped",
                              epochs=4, stop=2)
    assert resumed.average.updates == whole.average.updates
    for name, a in whole.average.average.items():
        assert torch.equal(a, resumed.average.average[name]), name
    assert_same_weights(whole.model, resumed.model)


@pytest.mark.parametrize("decay", [1.0, -0.1, "0.9"])
def test_bad_ema_decay_is_refused(decay):
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\)"):
        TrainConfig(ema_decay=decay, device="cpu")


def test_resuming_a_run_without_an_average_with_ema_decay_is_refused(data, tmp_path):
    make_trainer(data, tmp_path, epochs=1, ema_decay=0.0).fit()
    with pytest.raises(ValueError, match=r"other options: ema_decay=0.0 \(now 0.9\)"):
        make_trainer(data, tmp_path, epochs=2).resume()
    # a checkpoint written before ema_decay existed has neither the option nor an average
    path = tmp_path / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    del state["config"]["ema_decay"]
    save_checkpoint(state, path)
    with pytest.raises(ValueError, match="holds no weight average"):
        make_trainer(data, tmp_path, epochs=2).resume()


def test_load_run_refuses_an_average_that_does_not_fit_the_model(data, tmp_path):
    from pyrogen.train import CheckpointError

    make_trainer(data, tmp_path, epochs=1).fit()
    path = tmp_path / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    state["average"]["average"]["stranger.weight"] = torch.zeros(2)
    save_checkpoint(state, path)
    with pytest.raises(CheckpointError, match="parameters the model lacks: .*stranger.weight"):
        load_run(tmp_path, "last")
