import pytest
import torch

from resumetools import assert_same_weights, stop_and_resume

from pyrogen.data import load_dataset
from pyrogen.models import CVAE
from pyrogen.train import TrainConfig, Trainer
from pyrogen.train.pretrain import baseline_loss


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", binarize="dynamic", limit=300)


def make_trainer(data, run_dir=None, init_seed=0, **options):
    torch.manual_seed(init_seed)
    cvae = CVAE(data.shape, condition="prior-network", quadrants=2, latent_dim=4, hidden=(32,),
                baseline_epochs=3)
    options = {"epochs": 3, "batch_size": 50, "device": "cpu", "model": "cvae", **options}
    return Trainer(cvae, data, TrainConfig(model_config=cvae.config, **options), run_dir,
                   progress=False)


def test_baseline_trains_first_then_stays_fixed(data):
    trainer = make_trainer(data, epochs=2)
    untrained = baseline_loss(trainer, data.valid)
    snapshots = []
    trainer.callbacks.append(lambda t, r: snapshots.append(
        [p.detach().clone() for p in t.model.model.baseline.parameters()]))
    history = trainer.fit()
    assert bool(trainer.model.baseline_trained)
    assert history[0]["baseline_epochs"] == 3
    assert history[0]["baseline_valid_loss"] < untrained
    assert "baseline_valid_loss" not in history[1]
    for a, b in zip(*snapshots):  # the CVAE's epochs do not move the baseline
        assert torch.equal(a, b)


def test_resume_after_the_baseline_equals_an_uninterrupted_run(data, tmp_path):
    whole = make_trainer(data, tmp_path / "whole", epochs=3)
    whole.fit()
    resumed = stop_and_resume(lambda *a, **k: make_trainer(data, *a, **k), tmp_path / "stopped",
                              epochs=3, stop=1)
    assert_same_weights(whole.model, resumed.model)
    assert [r["train_loss"] for r in whole.history] == [r["train_loss"] for r in resumed.history]


def test_label_conditioning_needs_labels():
    unlabelled = load_dataset("digits", binarize="dynamic", limit=100)
    unlabelled.train.labels = None
    unlabelled.num_classes = None
    cvae = CVAE(unlabelled.shape, latent_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match="conditions on class labels"):
        Trainer(cvae, unlabelled, TrainConfig(model="cvae", epochs=1, device="cpu"), None)


def test_weight_averaging_starts_after_the_baseline(data):
    trainer = make_trainer(data, epochs=1, ema_decay=0.9)
    trainer.fit()
    params = dict(trainer.model.named_parameters())
    names = [n for n in trainer.average.average if ".baseline." in f".{n}"]
    assert names
    for name in names:  # the baseline does not move after its pretraining, nor does its average
        assert torch.equal(trainer.average.average[name], params[name]), name
