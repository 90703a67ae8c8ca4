import json
import math
import pickle

import pyro
import pytest
import torch

from resumetools import assert_same_weights, stop_and_resume

from pyrogen.data import load_dataset
from pyrogen.models import VAE
from pyrogen.families import load_run
from pyrogen.train import (
    CheckpointError,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    load_checkpoint,
    read_metrics,
)
from pyrogen.train.checkpoint import atomic_write


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", binarize="dynamic", limit=300)


def make_trainer(data, run_dir=None, seed=0, init_seed=None, **options):
    torch.manual_seed(seed if init_seed is None else init_seed)
    vae = VAE(data.shape, latent_dim=4, hidden=(32,))
    options = {"epochs": 3, "batch_size": 50, "device": "cpu", **options}
    config = TrainConfig(seed=seed, **options)
    return Trainer(vae, data, config, run_dir, progress=False)


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
def test_resume_equals_an_uninterrupted_run(data, tmp_path, jit):
    whole = make_trainer(data, tmp_path / "whole", epochs=4, jit=jit, kl_warmup=3)
    whole.fit()
    stopped = make_trainer(data, tmp_path / "stopped", epochs=2, jit=jit, kl_warmup=3)
    stopped.fit()
    resumed = make_trainer(data, tmp_path / "stopped", epochs=4, jit=jit, kl_warmup=3, init_seed=9)
    resumed.resume()
    assert resumed.epoch == 2
    resumed.fit()
    assert_same_weights(whole.model, resumed.model)
    assert [r["train_loss"] for r in whole.history] == [r["train_loss"] for r in resumed.history]
    assert [r["epoch"] for r in read_metrics(tmp_path / "stopped")] == [1, 2, 3, 4]


def test_resume_refuses_other_options(data, tmp_path):
    make_trainer(data, tmp_path, epochs=1).fit()
    other = make_trainer(data, tmp_path, epochs=2, lr=0.01, seed=3, batch_size=20)
    with pytest.raises(ValueError, match=r"other options: batch_size=50 \(now 20\), seed=0 \(now 3\)"):
        other.resume()


def test_resume_applies_and_records_a_changed_schedule(data, tmp_path):
    make_trainer(data, tmp_path, epochs=2, lr_schedule="cosine").fit()
    resumed = make_trainer(data, tmp_path, epochs=4, lr=0.01, lr_schedule="cosine")
    assert resumed.resume() == ["epochs", "lr"]
    history = resumed.fit()
    # from the epoch reached on, the closed form of the new schedule: 0.01 (1 + cos(pi e / 4)) / 2
    lrs = [r["lr"] for r in history]
    assert lrs[:2] == [1e-3, 5e-4] and lrs[2:] == pytest.approx([5e-3, 0.01 * (1 + math.cos(3 * math.pi / 4)) / 2])
    assert history[2]["resumed_with"] == {"epochs": [2, 4], "lr": [1e-3, 0.01]}
    assert "resumed_with" not in history[3]
    again = make_trainer(data, tmp_path, epochs=5, lr=0.01, lr_schedule="cosine")
    again.resume()  # the closed form is kept, and follows the new length
    assert again.fit()[-1]["lr"] == pytest.approx(0.01 * (1 + math.cos(4 * math.pi / 5)) / 2)


def test_extending_a_cosine_run_continues_the_uninterrupted_runs_rates(data, tmp_path):
    """The README's `--resume RUN --epochs N` on a cosine run: epochs 3 and 4 of a 2-epoch run
    extended to 4 get the rates of an uninterrupted 4-epoch run (once 0.0005, 0.0, ...)."""
    uninterrupted = [r["lr"] for r in make_trainer(data, tmp_path / "whole", epochs=4,
                                                   lr_schedule="cosine").fit()]
    assert uninterrupted == pytest.approx([1e-3, 1e-3 * (1 + math.cos(math.pi / 4)) / 2, 5e-4,
                                           1e-3 * (1 + math.cos(3 * math.pi / 4)) / 2])
    make_trainer(data, tmp_path / "run", epochs=2, lr_schedule="cosine").fit()
    resumed = make_trainer(data, tmp_path / "run", epochs=4, lr_schedule="cosine")
    resumed.resume()
    extended = [r["lr"] for r in resumed.fit()]
    assert extended[2:] == pytest.approx(uninterrupted[2:])


def test_run_folder(data, tmp_path):
    trainer = make_trainer(data, tmp_path / "run", epochs=2)
    history = trainer.fit()
    run = tmp_path / "run"
    for name in ("config.json", "metrics.jsonl", "samples.png", "reconstructions.png",
                 "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["epochs"] == 2 and config["data"]["binarize"] == "dynamic"
    records = read_metrics(run)
    assert records == history and len(records) == 2
    assert {"train_loss", "valid_loss", "lr", "beta", "binarize", "sec"} <= set(records[0])
    assert records[0]["binarize"] == "dynamic"
    model, loaded_config = load_run(run, "last")
    assert_same_weights(model, trainer.model)
    assert loaded_config.epochs == 2


def test_checkpoints_load_with_weights_only(data, tmp_path):
    make_trainer(data, tmp_path, epochs=1).fit()
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and "rng" in state and "optimizer" in state


class Exploit:
    def __reduce__(self):
        return (print, ("this code ran while loading",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "pyrogen-checkpoint-v1", "payload": Exploit()}, path)
    with pytest.raises(CheckpointError, match="cannot load checkpoint .* safely"):
        load_checkpoint(path)
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "file.bin"
    atomic_write(path, lambda f: f.write(b"old"))

    def broken(f):
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, broken)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data, tmp_path):
    trainer = make_trainer(data, tmp_path, epochs=3)
    good = trainer.step.loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = good(*args, **kwargs)
        return loss * float("nan") if calls["n"] > 7 else loss

    # calls: 1 JIT compilation, then 6 steps per epoch (300 points / 50)
    trainer.step.loss = poisoned
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at epoch 2, step 1 \(global step 7\)"
                       r".*last good checkpoint \(after epoch 1\)"):
        trainer.fit()
    kept = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert kept["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in kept["model_state"].values())
    assert len(read_metrics(tmp_path)) == 1


def test_early_stopping(data):
    def worse_each_epoch(trainer, record):
        record["valid_loss"] = float(record["epoch"])

    trainer = make_trainer(data, epochs=10, patience=2)
    trainer.callbacks.append(worse_each_epoch)
    history = trainer.fit()
    assert len(history) == 3


def test_callbacks_do_not_change_the_random_stream(data):
    plain = make_trainer(data, epochs=2)
    plain.fit()
    noisy = make_trainer(data, epochs=2)
    noisy.callbacks.append(lambda trainer, record: torch.randn(1000))
    noisy.fit()
    assert [r["train_loss"] for r in plain.history] == [r["train_loss"] for r in noisy.history]


@pytest.mark.parametrize("objective", ["meanfield", "iwae"])
def test_other_objectives_train(data, objective):
    trainer = make_trainer(data, epochs=2, objective=objective, num_particles=3)
    history = trainer.fit()
    assert history[1]["train_loss"] < history[0]["train_loss"]


def test_iwae_with_the_doubly_reparameterised_gradient_trains_eagerly(data, recwarn):
    """DReG's gradient hooks would be lost in a recorded graph: the trainer runs its loss
    through Pyro, on purpose and without CompiledLoss's warning."""
    trainer = make_trainer(data, epochs=2, objective="iwae", num_particles=3,
                           iwae_gradient="dreg")
    history = trainer.fit()
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert not any("CompiledLoss" in str(w.message) for w in recwarn)


def test_bernoulli_on_grey_levels_is_refused_before_work():
    grey = load_dataset("digits", binarize="none", limit=100)
    with pytest.raises(ValueError, match="likelihood 'bernoulli' needs binary data.*--binarize"):
        make_trainer(grey)


def test_shape_mismatch_is_refused(data):
    vae = VAE((1, 28, 28), latent_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match=r"expects data of shape \(1, 28, 28\).*\(1, 8, 8\)"):
        Trainer(vae, data, TrainConfig(device="cpu"))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"lr": -1.0}, "lr must be a positive number"),
        ({"objective": "gan"}, "objective must be one of"),
        ({"lr_schedule": "linear"}, "lr_schedule must be one of"),
        ({"lr_decay": 2.0}, r"lr_decay must be in \(0, 1\]"),
        ({"objective": "iwae", "beta": 0.5, "num_particles": 5}, "objective 'iwae' .* needs beta=1"),
        ({"objective": "iwae"}, "objective 'iwae' with num_particles=1 is the ELBO itself"),
        ({"iwae_gradient": "dreg"}, "iwae_gradient='dreg' .* needs objective 'iwae', got 'elbo'"),
        ({"objective": "iwae", "num_particles": 2, "iwae_gradient": "dreg", "inductor": True},
         "iwae_gradient 'dreg' runs eagerly .* drop inductor"),
        ({"iwae_gradient": "score"}, "iwae_gradient must be one of"),
        ({"device": "tpu"}, "device must be a torch device"),
        ({"batch_size": 10**6}, "batch size 1000000 .* is larger than the training split"),
        ({"batch_schedule": [[2, 10**6]]}, "batch size 1000000 .* is larger than the training split"),
        ({"batch_schedule": [[0, 25]]}, r"batch_schedule pairs must be \[epoch, size\] with positive"),
        ({"batch_schedule": [[3, 25], [2, 10]]}, "batch_schedule epochs must be strictly increasing"),
        ({"batch_schedule": [25]}, r"batch_schedule must be a list of \[epoch, size\] pairs"),
    ],
)
def test_bad_options_are_refused(data, options, message):
    with pytest.raises(ValueError, match=message):
        make_trainer(data, **options)


def test_batch_schedule_sets_each_epochs_batch_size():
    from pyrogen.train import batch_size_at

    config = TrainConfig(batch_size=50, batch_schedule=[[3, 25], [5, 10]], device="cpu")
    assert [batch_size_at(config, e) for e in range(6)] == [50, 50, 25, 25, 10, 10]
    assert batch_size_at(TrainConfig(batch_size=7, device="cpu"), 100) == 7


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
def test_batch_schedule_trains_at_each_size_and_resumes_exactly(data, tmp_path, jit):
    options = dict(batch_size=50, batch_schedule=[[3, 25]], jit=jit)
    whole = make_trainer(data, tmp_path / "whole", epochs=4, **options)
    history = whole.fit()
    n = len(data.train)
    per_epoch = [n // 50, n // 50, n // 25, n // 25] if jit else [-(-n // 50)] * 2 + [-(-n // 25)] * 2
    assert [r["batch_size"] for r in history] == [50, 50, 25, 25]
    assert [r["steps"] for r in history] == [sum(per_epoch[: i + 1]) for i in range(4)]
    # the loss is per data point at either size
    assert history[2]["train_loss"] == pytest.approx(history[1]["train_loss"], rel=0.2)
    resumed = stop_and_resume(lambda *a, **k: make_trainer(data, *a, **k), tmp_path / "stopped",
                              epochs=4, stop=2, **options)
    assert_same_weights(whole.model, resumed.model)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in history]


def test_kl_warmup_and_lr_schedule(data):
    from pyrogen.train import kl_weight

    config = TrainConfig(beta=2.0, kl_warmup=4, device="cpu")
    assert [kl_weight(config, e) for e in range(6)] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    trainer = make_trainer(data, epochs=3, lr_schedule="exponential", lr_decay=0.5)
    history = trainer.fit()
    assert [r["lr"] for r in history] == [1e-3, 5e-4, 2.5e-4]


def test_rng_state_round_trips_through_a_checkpoint(tmp_path):
    import random

    import numpy as np

    from pyrogen.train.checkpoint import get_rng_state, save_checkpoint, set_rng_state

    save_checkpoint({"rng": get_rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.random(), np.random.rand(), torch.rand(3)  # move every generator on
    set_rng_state(load_checkpoint(tmp_path / "rng.pt", map_location="cpu")["rng"])
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def test_a_new_trainer_does_not_overwrite_an_existing_run(data, tmp_path):
    make_trainer(data, tmp_path, epochs=1).fit()
    before = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(ValueError, match="already holds a run .* call resume"):
        make_trainer(data, tmp_path, epochs=2).fit()
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == before


@pytest.mark.parametrize("option", [{"batch_schedule": [[2, 25]]}, {"ema_decay": 0.99}],
                         ids=["batch_schedule", "ema_decay"])
def test_em_refuses_svi_only_options_before_work(tmp_path, option):
    from pyrogen.models import Mixture

    data = load_dataset("digits", binarize="static", limit=100)
    config = TrainConfig(model="mixture", binarize="static", device="cpu", **option)
    name = next(iter(option))
    with pytest.raises(ValueError, match=f"{name}=.*: does not apply to EM"):
        Trainer(Mixture(data.shape, num_components=3), data, config, tmp_path / "run").fit()
    assert not (tmp_path / "run").exists()


def _to_old_layout(path):
    """Rewrite a checkpoint as the SVI trainer wrote it before the steps: its one optimiser's
    and scheduler's state at the top, no step state."""
    state = load_checkpoint(path)
    state["optimizer"] = state["optimizer"]["elbo"]
    state["scheduler"] = state["scheduler"]["elbo"]
    del state["step"], state["closed_form_schedule"]
    torch.save(state, path)


def test_a_checkpoint_of_the_old_layout_resumes_exactly(data, tmp_path):
    whole = make_trainer(data, tmp_path / "whole", epochs=3)
    whole.fit()
    make_trainer(data, tmp_path / "old", epochs=1).fit()
    _to_old_layout(tmp_path / "old" / "checkpoints" / "last.pt")
    resumed = make_trainer(data, tmp_path / "old", epochs=3, init_seed=9)
    resumed.resume()
    resumed.fit()
    assert_same_weights(whole.model, resumed.model)
    assert [r["train_loss"] for r in whole.history] == [r["train_loss"] for r in resumed.history]


def test_generalised_em_through_the_trainer_equals_generalised_em(tmp_path):
    """EMStep's generalised EM takes the same steps as pyrogen.infer.generalised_em (the same
    random stream, the same Adam, though the trainer's runs torch's fused kernels, which round
    differently), one iteration per epoch; its best checkpoint is the last."""
    from pyrogen.infer import generalised_em
    from pyrogen.models import Mixture

    data = load_dataset("digits", binarize="static", limit=200)
    config = TrainConfig(model="mixture", binarize="static", device="cpu", em="generalised",
                         em_steps=2, epochs=3, batch_size=50, lr=0.05)
    pyro.set_rng_seed(0)
    ours = Mixture(data.shape, num_components=3)
    history = Trainer(ours, data, config, tmp_path / "run", progress=False).fit()

    pyro.clear_param_store()
    theirs = Mixture(data.shape, num_components=3)
    pyro.set_rng_seed(0)  # where the trainer seeds: after the model is built
    x = next(iter(data.train.batches(len(data.train), seed=0))).x
    theirs.init_from_data(x, method="kmeans++", seed=0)
    lls = generalised_em(theirs, x, num_iters=3, steps_per_iter=2, lr=0.05, batch_size=50)
    assert [-r["train_loss"] for r in history] == pytest.approx(lls[1:], rel=1e-6)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["epoch"] == 3


def test_a_step_that_follows_the_contract_plugs_in(data):
    """A Step subclass that defines run_epoch only (the base gives the rest) trains."""
    from pyrogen.train import Step

    class Noise(Step):
        def bind(self, trainer):
            self.params = [p for p in trainer.model.parameters() if p.requires_grad]
            self.optimizer = trainer.add_optimizer("noise", self.params)

        def run_epoch(self, trainer):
            loss = sum((p ** 2).sum() for p in self.params)
            return {"train_loss": trainer.optimise(loss, self.params, self.optimizer)}

    vae = VAE(data.shape, latent_dim=2, hidden=(8,))
    config = TrainConfig(epochs=2, device="cpu", batch_size=50)
    history = Trainer(vae, data, config, None, step=Noise(), progress=False).fit()
    assert len(history) == 2 and history[1]["train_loss"] < history[0]["train_loss"]


def test_threads_are_set_said_and_recorded(data, capsys):
    """``threads`` sets torch's CPU threads for the run, the log says how many, every epoch's
    record holds the number; 0 (the default) means the measured default, one thread."""
    from pyrogen.train.config import default_threads

    before = torch.get_num_threads()
    try:
        history = make_trainer(data, epochs=1, threads=2).fit()
        assert torch.get_num_threads() == 2 and history[0]["threads"] == 2
        assert "training on cpu with 2 threads (--threads)" in capsys.readouterr().err
        history = make_trainer(data, epochs=1).fit()
        assert history[0]["threads"] == default_threads() == torch.get_num_threads() == 1
        assert "with 1 thread (the default; --threads N to change)" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="threads must be >= 0, got -1"):
        TrainConfig(threads=-1)
