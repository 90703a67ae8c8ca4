import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyrogen.infer.mcem import SIRPosterior
from ppca import make_ppca, ppca_pair, sample_ppca


def exact_posterior(W, mu, sigma, x):
    q = W.shape[1]
    M = W.T @ W + sigma**2 * torch.eye(q, dtype=W.dtype)
    return torch.linalg.solve(M, W.T @ (x - mu)), sigma**2 * torch.linalg.inv(M)


@pytest.mark.parametrize("num_proposals,mcmc_steps", [(400, 0), (1, 40), (8, 10)],
                         ids=["sir-only", "mala-only", "sir+mala"])
def test_draws_follow_the_exact_ppca_posterior(num_proposals, mcmc_steps):
    W, mu, sigma = make_ppca(d=5, q=2, sigma=0.8)
    model, _ = ppca_pair(W, mu, sigma)
    x = sample_ppca(W, mu, sigma, 1)[0]
    e_step = SIRPosterior(model, num_proposals=num_proposals, mcmc_steps=mcmc_steps, step_size=0.5)
    n = 4000
    pyro.set_rng_seed(0)
    z = poutine.trace(e_step).get_trace(x.expand(n, -1)).nodes["z"]["value"]
    mean, cov = exact_posterior(W, mu, sigma, x)
    sd = cov.diagonal().sqrt()
    assert torch.allclose(z.mean(0), mean, atol=4 * (sd / n**0.5).max().item() + 0.02)
    assert torch.allclose(torch.cov(z.T), cov, atol=0.1 * cov.diagonal().max().item())
    if mcmc_steps:
        assert 0.2 < e_step.acceptance_rate <= 1


def test_trace_elbo_is_the_complete_data_nll_and_moves_only_the_model():
    W, mu, sigma = make_ppca(d=5, q=2, sigma=0.8)
    model, _ = ppca_pair(W, mu, sigma)
    x = sample_ppca(W, mu, sigma, 30)
    e_step = SIRPosterior(model, num_proposals=4, mcmc_steps=2)
    assert list(e_step.parameters()) == []
    pyro.set_rng_seed(7)
    z = poutine.trace(e_step).get_trace(x).nodes["z"]["value"]
    expected = -e_step.log_joint(x, z).sum()
    pyro.set_rng_seed(7)  # the same draws: Trace_ELBO runs the guide first
    assert Trace_ELBO().loss(model, e_step, x) == pytest.approx(expected.item(), rel=1e-6)
    pyro.clear_param_store()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    svi = SVI(model, e_step, Adam({"lr": 1e-2}), Trace_ELBO())
    svi.step(x)
    # the param store holds the model's three tensors and nothing of the guide's
    prefix = {n.split(".", 1)[0] for n in pyro.get_param_store().keys()}
    assert len(prefix) == 1  # the model's own name in the store
    assert {n.split(".", 1)[1].replace("$$$", ".") for n in pyro.get_param_store().keys()} == {
        "decoder.weight", "decoder.bias", "likelihood.scale"}
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert "decoder.weight" in moved


@pytest.mark.parametrize("options,match", [
    ({"num_proposals": 0}, "num_proposals"),
    ({"mcmc_steps": -1}, "mcmc_steps"),
    ({"step_size": 0.0}, "step_size"),
])
def test_bad_options(options, match):
    W, mu, sigma = make_ppca()
    model, _ = ppca_pair(W, mu, sigma)
    with pytest.raises(ValueError, match=match):
        SIRPosterior(model, **options)
    with pytest.raises(TypeError, match="VAEModel"):
        SIRPosterior(torch.nn.Linear(2, 2))


def test_trace_mcem_gradients_are_the_m_step_and_the_proposals_elbo(monkeypatch):
    from pyrogen.infer.mcem import Trace_MCEM
    from pyrogen.models import VAE

    torch.manual_seed(0)
    vae = VAE((1, 4, 4), latent_dim=2, hidden=(8,))
    x = torch.bernoulli(torch.rand(6, 1, 4, 4))
    z_fixed = torch.randn(6, 2)
    monkeypatch.setattr(SIRPosterior, "resample", lambda self, x: z_fixed)
    monkeypatch.setattr(SIRPosterior, "mala", lambda self, x, z: z)
    theta = list(vae.model.parameters())
    phi = list(vae.guide.parameters())

    pyro.set_rng_seed(1)
    loss = Trace_MCEM().differentiable_loss(vae.model, vae.guide, x, num_data=60)
    got = torch.autograd.grad(loss, theta + phi)
    pyro.set_rng_seed(1)  # the same draw of the guide
    elbo = Trace_ELBO().differentiable_loss(vae.model, vae.guide, x, num_data=60)
    elbo_phi = torch.autograd.grad(elbo, phi)
    # the value is the negative ELBO
    assert loss.item() == pytest.approx(elbo.item(), rel=1e-6)
    # theta: the Monte Carlo M-step, -(60/6) sum_n grad log p(x_n, z_n) at the E-step's draws
    complete = poutine.trace(poutine.condition(vae.model, data={"z": z_fixed})).get_trace(x)
    m_step = torch.autograd.grad(-10 * sum(s["fn"].log_prob(s["value"]).sum()
                                           for s in complete.nodes.values()
                                           if s["type"] == "sample"), theta)
    for a, b in zip(got[: len(theta)], m_step):
        assert torch.allclose(a, b, atol=1e-5)
    # phi: the ELBO's gradient
    for a, b in zip(got[len(theta):], elbo_phi):
        assert torch.allclose(a, b, atol=1e-5)
