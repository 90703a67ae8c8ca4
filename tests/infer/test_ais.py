"""AIS and BDMC against the closed-form marginal likelihood of probabilistic PCA:
z ~ N(0, I_d), x | z ~ N(W z + mu, sigma^2 I_D), so x ~ N(mu, W W^T + sigma^2 I_D)."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrogen.infer.annealed import ais, bdmc, sigmoid_schedule

D, LATENT, SIGMA = 8, 2, 0.5


@pytest.fixture
def ppca():
    g = torch.Generator().manual_seed(0)
    W, mu = torch.randn(D, LATENT, generator=g), torch.randn(D, generator=g)

    def model(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(torch.zeros(LATENT), 1.0).expand([x.shape[0], LATENT]).to_event(1))
            pyro.sample("x", dist.Normal(z @ W.T + mu, SIGMA).to_event(1), obs=x)

    marginal = dist.MultivariateNormal(mu, W @ W.T + SIGMA ** 2 * torch.eye(D))
    return model, marginal


def test_ais_finds_the_exact_marginal_likelihood(ppca):
    model, marginal = ppca
    pyro.set_rng_seed(1)
    x = marginal.sample((6,))
    result = ais(model, x, num_steps=300, num_chains=24)
    error = result.log_likelihood - marginal.log_prob(x)
    assert error.mean().abs() < 0.1  # nats per point
    assert (error.abs() < 4 * result.stderr + 0.05).all()
    assert ((result.accept_rate > 0.4) & (result.accept_rate < 0.9)).all()
    assert result.direction == "forward" and result.num_steps == 300


def test_bdmc_bounds_bracket_the_exact_value(ppca):
    model, marginal = ppca
    pyro.set_rng_seed(2)
    x = torch.zeros(6, D)  # only the batch size: BDMC simulates its own data
    found = bdmc(model, x, num_steps=200, num_chains=16)
    exact = marginal.log_prob(found["x"]["x"])
    lower, upper = found["lower"].log_likelihood, found["upper"].log_likelihood
    # both are stochastic bounds (in expectation): around the exact value, within their noise
    assert (lower - exact).mean() < 0.1 and (upper - exact).mean() > -0.1
    assert abs(found["gap"]) < 0.3 and found["upper"].direction == "reverse"


def test_a_short_schedule_has_a_wider_gap(ppca):
    """The lower bound rises (and the BDMC gap shrinks) as the schedule grows."""
    model, _ = ppca
    pyro.set_rng_seed(3)
    x = torch.zeros(6, D)
    short = bdmc(model, x, num_steps=5, num_chains=8)
    pyro.set_rng_seed(3)
    long = bdmc(model, x, num_steps=100, num_chains=8)
    assert short["gap"] > 1 and short["gap"] > 2 * abs(long["gap"])


def test_schedule_and_bad_settings():
    betas = sigmoid_schedule(10)
    assert betas[0] == 0 and betas[-1] == 1 and (betas.diff() > 0).all() and len(betas) == 11
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        sigmoid_schedule(0)
    model = lambda x: None  # noqa: E731
    with pytest.raises(ValueError, match="schedule must rise strictly from 0 to 1"):
        ais(model, torch.zeros(2, 3), schedule=torch.tensor([0.0, 0.5, 0.4, 1.0]))
    with pytest.raises(ValueError, match="no latent sample site"):
        ais(model, torch.zeros(2, 3), num_steps=2)


def test_a_linear_decoder_under_the_gaussian_observation_model_is_ppca():
    """GaussianObservationModel with x(z) = W z + mu is probabilistic PCA: AIS finds its exact
    marginal likelihood."""
    from pyrogen.models import GaussianObservationModel

    g = torch.Generator().manual_seed(4)
    W, mu = torch.randn(D, LATENT, generator=g), torch.randn(D, generator=g)
    prior = lambda: dist.Normal(torch.zeros(LATENT), torch.ones(LATENT)).to_event(1)  # noqa: E731
    model = GaussianObservationModel(lambda z: z @ W.T + mu, prior, (D,), SIGMA)
    marginal = dist.MultivariateNormal(mu, W @ W.T + SIGMA ** 2 * torch.eye(D))
    pyro.set_rng_seed(5)
    x = marginal.sample((6,))
    result = ais(model, x, num_steps=300, num_chains=24)
    assert (result.log_likelihood - marginal.log_prob(x)).mean().abs() < 0.1
    with pytest.raises(ValueError, match="sigma must be > 0"):
        GaussianObservationModel(lambda z: z, prior, (D,), 0.0)


def test_a_vae_under_the_gaussian_observation_model_scores_its_decoders_means():
    """VAE.gaussian_observation(sigma): log p(x | z) = log N(x; sigmoid(decoder(z)), sigma^2 I)
    with the VAE's own prior, and gradients reach z (AIS's HMC needs them)."""
    from pyrogen.models import VAE

    vae = VAE((1, 4, 4), latent_dim=3, hidden=(8,))
    target = vae.gaussian_observation(0.2)
    x = torch.rand(5, 1, 4, 4)
    z = torch.randn(5, 3, requires_grad=True)
    trace = pyro.poutine.trace(pyro.poutine.condition(target, data={"z": z})).get_trace(x)
    expected = dist.Normal(torch.sigmoid(vae.model.decoder(z)), 0.2).to_event(3).log_prob(x)
    assert torch.allclose(trace.nodes["x"]["fn"].log_prob(x), expected)
    assert torch.allclose(trace.nodes["z"]["fn"].log_prob(z), dist.Normal(0.0, 1.0).log_prob(z).sum(-1))
    trace.nodes["x"]["fn"].log_prob(x).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
