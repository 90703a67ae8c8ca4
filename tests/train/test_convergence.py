"""Slow convergence checks (run with `pytest -m slow`)."""

import pytest
import torch

from pyrogen.data import load_dataset
from pyrogen.infer import log_likelihood
from pyrogen.models import VAE
from pyrogen.train import TrainConfig, Trainer


@pytest.mark.slow
def test_digits_vae_reaches_a_good_test_likelihood(tmp_path):
    data = load_dataset("digits", binarize="dynamic")
    torch.manual_seed(0)
    vae = VAE(data.shape, latent_dim=8, hidden=(256,))
    config = TrainConfig(epochs=60, batch_size=50, lr=2e-3, lr_schedule="cosine", lr_min=1e-5,
                         device="cpu")
    Trainer(vae, data, config, tmp_path, progress=False).fit()
    test = torch.cat([b.x for b in data.test.batches(500)])
    nll = -log_likelihood(vae.model, vae.guide, test, num_samples=1000).mean().item()
    # `make demo` (the same settings) measures about 23.3 nats on the 359 test digits
    assert nll < 25.0
