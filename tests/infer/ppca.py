"""Probabilistic PCA: a linear-Gaussian model with an exact likelihood and posterior.

    z ~ N(0, I_q),  x | z ~ N(W z + mu, sigma^2 I_d)
    => x ~ N(mu, W W^T + sigma^2 I_d),
       z | x ~ N(M^-1 W^T (x - mu), sigma^2 M^-1),  M = W^T W + sigma^2 I_q.

With orthogonal columns of W, M is diagonal, so the exact posterior is a
mean-field Gaussian whose mean is linear in x: a VAE guide can represent it.
"""

import math

import torch
from torch import nn

from pyrogen.models import VAEGuide, VAEModel


def make_ppca(d=6, q=2, sigma=0.5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(d, q, generator=g, dtype=dtype))
    W = basis * torch.tensor([2.0, 1.2], dtype=dtype)[:q]
    mu = torch.randn(d, generator=g, dtype=dtype)
    return W, mu, sigma


def sample_ppca(W, mu, sigma, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, W.shape[1], generator=g, dtype=W.dtype)
    return z @ W.T + mu + sigma * torch.randn(n, W.shape[0], generator=g, dtype=W.dtype)


def exact_log_likelihood(W, mu, sigma, x):
    cov = W @ W.T + sigma**2 * torch.eye(W.shape[0], dtype=W.dtype)
    return torch.distributions.MultivariateNormal(mu, cov).log_prob(x)


def ml_log_likelihood(x, q):
    """The maximum of the PPCA log-likelihood per data point (Tipping and Bishop 1999)."""
    n, d = x.shape
    s = torch.cov(x.T, correction=0)
    eig = torch.linalg.eigvalsh(s).flip(0)
    sigma2 = eig[q:].mean()
    log_det = torch.log(eig[:q]).sum() + (d - q) * torch.log(sigma2)
    return -0.5 * (d * math.log(2 * math.pi) + log_det + d)


class LinearEncoder(nn.Module):
    """loc = A x + b, scale = exp(log_scale) (constant), as the exact PPCA posterior."""

    def __init__(self, d, q):
        super().__init__()
        self.linear = nn.Linear(d, q)
        self.log_scale = nn.Parameter(torch.zeros(q))

    def forward(self, x):
        loc = self.linear(x)
        return loc, self.log_scale.exp().expand_as(loc)


def ppca_pair(W, mu, sigma, exact_guide=True):
    """A pyrogen VAEModel/VAEGuide pair holding the PPCA parameters."""
    d, q = W.shape
    decoder = nn.Linear(q, d).to(W.dtype)
    model = VAEModel(decoder, q, (d,), likelihood="gaussian").to(W.dtype)
    encoder = LinearEncoder(d, q).to(W.dtype)
    guide = VAEGuide(encoder, (d,))
    set_ppca(model, guide, W, mu, sigma, exact_guide)
    return model, guide


def set_ppca(model, guide, W, mu, sigma, exact_guide=True):
    d, q = W.shape
    with torch.no_grad():
        model.decoder.weight.copy_(W)
        model.decoder.bias.copy_(mu)
        model.likelihood.scale = torch.tensor(sigma, dtype=W.dtype)
        M = W.T @ W + sigma**2 * torch.eye(q, dtype=W.dtype)
        A = torch.linalg.solve(M, W.T)
        enc = guide.encoder
        enc.linear.weight.copy_(A)
        enc.linear.bias.copy_(-A @ mu)
        scale = (sigma**2 / torch.diagonal(M)).sqrt()
        if not exact_guide:  # too wide and off-centre: finite-variance weights
            scale = scale * 1.5
            enc.linear.bias.add_(0.3)
        enc.log_scale.copy_(scale.log())
