"""A VAE with a linear decoder, trained on PPCA data, reaches the maximum likelihood."""

import pyro
import torch
from pyro.infer import TraceMeanField_ELBO

from pyrogen.infer import log_likelihood
from pyrogen.models import VAEGuide, VAEModel

from ppca import LinearEncoder, exact_log_likelihood, make_ppca, ml_log_likelihood, sample_ppca


STEPS = 300


def test_linear_vae_reaches_ppca_maximum_likelihood():
    W, mu, sigma = make_ppca(d=6, q=2, sigma=0.5)
    x = sample_ppca(W, mu, sigma, 1000).float()
    d, q = W.shape
    model = VAEModel(torch.nn.Linear(q, d), q, (d,), likelihood="gaussian")
    guide = VAEGuide(LinearEncoder(d, q), (d,))
    loss = TraceMeanField_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1)(model, guide)
    optim = torch.optim.Adam(loss.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, STEPS, eta_min=1e-4)
    for _ in range(STEPS):
        optim.zero_grad()
        with pyro.validation_enabled(False):
            value = loss(x) / len(x)
        value.backward()
        optim.step()
        sched.step()
    dec = model.decoder
    learned_W = dec.weight.detach().double()
    learned_sigma = model.likelihood.scale.item()
    exact = exact_log_likelihood(learned_W, dec.bias.detach().double(), learned_sigma, x.double())
    best = ml_log_likelihood(x.double(), q)
    # the learned model's exact log-likelihood is within a small tolerance of the ML one
    assert best - exact.mean() < 0.01
    # and the IS estimate from the trained encoder agrees with the exact value
    pyro.set_rng_seed(0)
    estimate = log_likelihood(model, guide, x, num_samples=200)
    assert (estimate.mean() - exact.mean()).abs() < 0.01
