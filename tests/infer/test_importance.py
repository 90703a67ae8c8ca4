import math

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyrogen.data import Batch
from pyrogen.infer import Trace_IWAE, bits_per_dim, elbo, log_importance_weights, log_likelihood
from pyrogen.models import VAE

from ppca import exact_log_likelihood, make_ppca, ppca_pair, sample_ppca


@pytest.fixture
def ppca():
    W, mu, sigma = make_ppca()
    x = sample_ppca(W, mu, sigma, 50)
    return W, mu, sigma, x


def test_exact_posterior_makes_every_weight_the_likelihood(ppca):
    W, mu, sigma, x = ppca
    model, guide = ppca_pair(W, mu, sigma, exact_guide=True)
    exact = exact_log_likelihood(W, mu, sigma, x)
    log_w, scale = log_importance_weights(model, guide, x, num_particles=7)
    assert log_w.shape == (7, 50) and scale == 1.0
    # with q(z|x) = p(z|x), log p(x,z) - log q(z|x) = log p(x) for every z
    assert torch.allclose(log_w, exact.expand(7, 50), atol=1e-9)
    assert torch.allclose(log_likelihood(model, guide, x, num_samples=3), exact, atol=1e-9)
    assert torch.allclose(elbo(model, guide, x), exact, atol=1e-9)


def test_elbo_below_and_is_estimate_converges_to_exact(ppca):
    W, mu, sigma, x = ppca
    model, guide = ppca_pair(W, mu, sigma, exact_guide=False)
    exact = exact_log_likelihood(W, mu, sigma, x)
    bound = elbo(model, guide, x, num_particles=2000)
    assert (bound < exact - 0.1).all()
    errors = [(log_likelihood(model, guide, x, num_samples=k) - exact).abs().mean().item()
              for k in (1, 30, 3000)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.05


def test_chunking_does_not_change_the_estimate(ppca):
    W, mu, sigma, x = ppca
    model, guide = ppca_pair(W, mu, sigma, exact_guide=False)
    torch.manual_seed(0)
    whole = log_likelihood(model, guide, x, num_samples=60, batch_size=50, chunk_size=60)
    torch.manual_seed(0)
    chunked = log_likelihood(model, guide, x, num_samples=60, batch_size=50, chunk_size=60)
    assert torch.allclose(whole, chunked)
    # a different chunking draws other particles: equal in distribution, so compare means
    many = log_likelihood(model, guide, x, num_samples=4000, batch_size=7, chunk_size=13)
    one = log_likelihood(model, guide, x, num_samples=4000, batch_size=50)
    assert many.shape == (50,)
    assert (many - one).abs().mean() < 0.05


def test_iterable_of_batches_is_accepted(ppca):
    W, mu, sigma, x = ppca
    model, guide = ppca_pair(W, mu, sigma)
    batches = [x[:20], (x[20:],)]
    exact = exact_log_likelihood(W, mu, sigma, x)
    assert torch.allclose(log_likelihood(model, guide, batches, num_samples=2), exact, atol=1e-9)
    index = torch.arange(len(x))
    batches = [Batch(x[:20], None, index[:20]), Batch(x[20:], None, index[20:])]
    assert torch.allclose(log_likelihood(model, guide, batches, num_samples=2), exact, atol=1e-9)


def test_tuple_data_are_positional_arguments_split_together(ppca):
    W, mu, sigma, x = ppca
    model, guide = ppca_pair(W, mu, sigma)
    seen = []

    def guide_with_tag(x, tag, **kwargs):
        seen.append(tag.tolist())
        assert tag.shape[0] == x.shape[0]
        return guide(x, **kwargs)

    def model_with_tag(x, tag, **kwargs):
        return model(x, **kwargs)

    tags = torch.arange(len(x))
    exact = exact_log_likelihood(W, mu, sigma, x)
    estimate = log_likelihood(model_with_tag, guide_with_tag, (x, tags), num_samples=2, batch_size=16)
    assert torch.allclose(estimate, exact, atol=1e-9)
    assert sum(seen, []) == tags.tolist()
    with pytest.raises(ValueError, match="same first dimension"):
        log_likelihood(model_with_tag, guide_with_tag, (x, tags[:-1]), num_samples=2)


def test_iwae_bound_tightens_with_k_and_stays_below(ppca):
    W, mu, sigma, x = ppca
    model, guide = ppca_pair(W, mu, sigma, exact_guide=False)
    exact = exact_log_likelihood(W, mu, sigma, x).sum().item()
    bounds = {}
    for k in (1, 10, 100):
        bounds[k] = -sum(Trace_IWAE(num_particles=k).loss(model, guide, x) for _ in range(20)) / 20
    assert bounds[1] < bounds[10] < bounds[100] < exact


def test_iwae_with_one_particle_is_the_elbo(ppca):
    W, mu, sigma, x = ppca
    model, guide = ppca_pair(W, mu, sigma, exact_guide=False)
    pyro.set_rng_seed(5)
    iwae = Trace_IWAE(num_particles=1).loss(model, guide, x)
    pyro.set_rng_seed(5)
    elbo_loss = Trace_ELBO().loss(model, guide, x)
    assert iwae == pytest.approx(elbo_loss, rel=1e-9)


def test_iwae_exact_guide_gives_exact_likelihood(ppca):
    W, mu, sigma, x = ppca
    model, guide = ppca_pair(W, mu, sigma, exact_guide=True)
    exact = exact_log_likelihood(W, mu, sigma, x).sum().item()
    assert -Trace_IWAE(num_particles=4).loss(model, guide, x) == pytest.approx(exact, rel=1e-9)


def test_iwae_scales_with_the_data_plate(ppca):
    W, mu, sigma, x = ppca
    model, guide = ppca_pair(W, mu, sigma, exact_guide=False)
    pyro.set_rng_seed(2)
    full = Trace_IWAE(num_particles=3).loss(model, guide, x[:10])
    pyro.set_rng_seed(2)
    scaled = Trace_IWAE(num_particles=3).loss(model, guide, x[:10], num_data=1000)
    assert scaled == pytest.approx(100 * full, rel=1e-9)


def test_iwae_loss_and_grads_match_differentiable_loss():
    vae = VAE((1, 4, 4), latent_dim=3, hidden=(8,))
    x = torch.bernoulli(torch.rand(6, 1, 4, 4))
    iwae = Trace_IWAE(num_particles=4)
    pyro.set_rng_seed(1)
    loss = iwae.differentiable_loss(vae.model, vae.guide, x)
    grads = torch.autograd.grad(loss, list(vae.parameters()))
    pyro.set_rng_seed(1)
    value = iwae.loss_and_grads(vae.model, vae.guide, x)
    assert value == pytest.approx(loss.item(), rel=1e-6)
    for g, p in zip(grads, vae.parameters()):
        assert torch.allclose(g, p.grad, atol=1e-6)
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-2}), iwae)
    assert math.isfinite(svi.step(x))


def _grads(loss, model, guide, x, seed):
    pyro.set_rng_seed(seed)
    value = loss.differentiable_loss(model, guide, x)
    params = list(model.parameters()) + list(guide.parameters())
    return value, torch.autograd.grad(value, params)


def test_dreg_guide_gradient_vanishes_at_the_exact_posterior(ppca):
    """With q(z|x) = p(z|x), log w_k = log p(x) whatever z_k, so every pathwise term of the
    doubly reparameterised guide gradient is zero, draw by draw; the reparameterised
    gradient is zero only in expectation. The model's gradient is the same in both."""
    W, mu, sigma, x = ppca
    model, guide = ppca_pair(W, mu, sigma, exact_guide=True)
    n_model = len(list(model.parameters()))
    value, dreg = _grads(Trace_IWAE(num_particles=4, gradient="dreg"), model, guide, x, 3)
    same, reparam = _grads(Trace_IWAE(num_particles=4), model, guide, x, 3)
    assert value.item() == pytest.approx(same.item(), rel=1e-12)  # the value is the bound
    for g in dreg[n_model:]:
        assert torch.allclose(g, torch.zeros_like(g), atol=1e-10)
    assert max(g.abs().max().item() for g in reparam[n_model:]) > 1e-3
    for a, b in zip(dreg[:n_model], reparam[:n_model]):
        assert torch.allclose(a, b, atol=1e-10)


def test_dreg_has_the_reparameterised_gradient_as_its_expectation(ppca):
    """Unbiased: averaged over many draws, the doubly reparameterised guide gradient agrees
    with the reparameterised one (within four standard errors of their paired difference),
    while the sticking-the-landing form (weights not squared) would be biased for K > 1."""
    W, mu, sigma, _ = ppca
    model, guide = ppca_pair(W, mu, sigma, exact_guide=False)
    x = sample_ppca(W, mu, sigma, 1, seed=4).expand(2000, -1)  # one point, 2000 draws a run
    n_model = len(list(model.parameters()))
    diffs = []
    for seed in range(30):
        _, dreg = _grads(Trace_IWAE(num_particles=3, gradient="dreg"), model, guide, x, seed)
        _, reparam = _grads(Trace_IWAE(num_particles=3), model, guide, x, seed)
        diffs.append(torch.cat([(a - b).flatten() for a, b in zip(dreg[n_model:], reparam[n_model:])]))
    diffs = torch.stack(diffs)
    mean, stderr = diffs.mean(0), diffs.std(0) / math.sqrt(len(diffs))
    assert (mean.abs() < 4 * stderr + 1e-9).all(), (mean, stderr)
    assert (stderr > 0).all()


def test_dreg_refuses_a_guide_with_two_latent_sites():
    def model(x):
        with pyro.plate("data", len(x), dim=-1):
            a = pyro.sample("a", pyro.distributions.Normal(0.0, 1.0))
            b = pyro.sample("b", pyro.distributions.Normal(a, 1.0))
            pyro.sample("x", pyro.distributions.Normal(b, 1.0), obs=x)

    loc = torch.zeros(3, requires_grad=True)

    def guide(x):
        with pyro.plate("data", len(x), dim=-1):
            a = pyro.sample("a", pyro.distributions.Normal(loc, 1.0))
            pyro.sample("b", pyro.distributions.Normal(a, 1.0))

    x = torch.zeros(3)
    with pytest.raises(NotImplementedError, match=r"one latent site, got \['a', 'b'\]"):
        Trace_IWAE(num_particles=2, gradient="dreg").differentiable_loss(model, guide, x)
    loss = Trace_IWAE(num_particles=2).differentiable_loss(model, guide, x)
    assert torch.isfinite(loss)


def test_iwae_refuses_an_unknown_gradient_estimator():
    with pytest.raises(ValueError, match="gradient must be one of"):
        Trace_IWAE(num_particles=2, gradient="stl")


def test_global_latents_are_rejected():
    def model(x):
        w = pyro.sample("w", pyro.distributions.Normal(0.0, 1.0))
        with pyro.plate("data", len(x), dim=-1):
            pyro.sample("x", pyro.distributions.Normal(w, 1.0), obs=x)

    def guide(x):
        pyro.sample("w", pyro.distributions.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="'w' is outside the 'data' plate"):
        log_importance_weights(model, guide, torch.zeros(3))


@pytest.mark.parametrize("bad", [{"num_samples": 0}, {"batch_size": 0}, {"chunk_size": 0}])
def test_bad_arguments(ppca, bad):
    W, mu, sigma, x = ppca
    model, guide = ppca_pair(W, mu, sigma)
    with pytest.raises(ValueError, match=next(iter(bad))):
        log_likelihood(model, guide, x, **bad)


def test_bits_per_dim():
    assert bits_per_dim(torch.tensor(-784 * math.log(2.0)), 784).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="num_dims"):
        bits_per_dim(-1.0, 0)


def test_iwae_refuses_a_kl_weight():
    vae = VAE((1, 4, 4), latent_dim=3, hidden=(8,))
    x = torch.bernoulli(torch.rand(6, 1, 4, 4))
    with pytest.raises(ValueError, match="scaled by 0.5 beyond the data plate"):
        Trace_IWAE(num_particles=2).loss(vae.model, vae.guide, x, num_data=60, beta=0.5)
    assert math.isfinite(Trace_IWAE(num_particles=2).loss(vae.model, vae.guide, x, num_data=60))


def test_every_batch_is_validated_though_later_chunks_skip_the_checks():
    """Pyro's validation sees each batch's first chunk: a grey value in any batch of a
    Bernoulli model is refused, while the batch's other chunks run unchecked."""
    from pyrogen.models import VAE

    vae = VAE((1, 4, 4), latent_dim=2, hidden=(8,))
    x = (torch.rand(30, 1, 4, 4) < 0.5).float()
    log_likelihood(vae.model, vae.guide, x, num_samples=12, batch_size=10, chunk_size=4)
    x[25, 0, 1, 1] = 0.5  # in the third batch
    with pytest.raises(ValueError, match="support"):
        log_likelihood(vae.model, vae.guide, x, num_samples=12, batch_size=10, chunk_size=4)
    assert pyro.distributions.is_validation_enabled()  # the switch is back as it was


@pytest.mark.parametrize("backend", ["export", "inductor"])
def test_compiled_backends_give_the_eager_estimate(backend):
    """The recorded (and compiled) chunks draw what the eager chunks draw, so the estimates
    agree to float rounding; recording draws nothing the estimate sees."""
    pyro.clear_param_store()
    vae = VAE((1, 5, 5), latent_dim=3, hidden=(16,)).eval()
    x = torch.bernoulli(torch.rand(23, 1, 5, 5))
    torch.manual_seed(0)
    eager = log_likelihood(vae.model, vae.guide, x, num_samples=30, batch_size=10, chunk_size=7)
    torch.manual_seed(0)
    compiled = log_likelihood(vae.model, vae.guide, x, num_samples=30, batch_size=10,
                              chunk_size=7, backend=backend)
    assert compiled.shape == (23,)
    assert torch.allclose(compiled, eager, atol=1e-4, rtol=0)
    # a grey value is still refused: one eager particle per batch validates its data
    x[15, 0, 2, 2] = 0.5
    with pytest.raises(ValueError, match="support"):
        log_likelihood(vae.model, vae.guide, x, num_samples=30, batch_size=10, chunk_size=7,
                       backend=backend)


def test_unknown_backend_is_refused(ppca):
    W, mu, sigma, x = ppca
    model, guide = ppca_pair(W, mu, sigma)
    with pytest.raises(ValueError, match="backend must be one of"):
        log_likelihood(model, guide, x, backend="jit")


def test_a_pair_of_functions_runs_eagerly_with_a_warning(ppca):
    """Only modules' parameters can be found and recorded: functions are refused by the
    recorder, said once, and the estimate is the eager one."""
    W, mu, sigma, x = ppca
    model, guide = ppca_pair(W, mu, sigma, exact_guide=True)
    exact = exact_log_likelihood(W, mu, sigma, x)
    with pytest.warns(RuntimeWarning, match="model and guide must be torch modules"):
        ll = log_likelihood(lambda x: model(x), lambda x: guide(x), x, num_samples=6,
                            chunk_size=2, backend="export")
    assert torch.allclose(ll, exact, atol=1e-9)


class BranchingGuide(torch.nn.Module):
    """A guide with a Python branch on its data: no recorded graph can hold it."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x) if x.sum() > -1e9 else None


def test_a_model_that_cannot_be_recorded_runs_eagerly_with_a_warning(ppca):
    """A guide that branches on a tensor's value cannot be recorded as one graph: the
    compiled backend says so once and gives the eager estimate."""
    W, mu, sigma, x = ppca
    model, guide = ppca_pair(W, mu, sigma, exact_guide=True)

    exact = exact_log_likelihood(W, mu, sigma, x)
    with pytest.warns(RuntimeWarning, match="runs eagerly"):
        ll = log_likelihood(model, BranchingGuide(guide), x, num_samples=6, chunk_size=2,
                            backend="export")
    assert torch.allclose(ll, exact, atol=1e-9)


def test_a_single_chunk_is_compiled_too(ppca):
    """Where K fits one chunk, that chunk is still the recorded one (the validating particle
    runs apart): a guide that cannot be recorded is found out, and said, even then."""
    W, mu, sigma, x = ppca
    model, guide = ppca_pair(W, mu, sigma, exact_guide=True)

    with pytest.warns(RuntimeWarning, match="runs eagerly"):
        ll = log_likelihood(model, BranchingGuide(guide), x, num_samples=5, backend="export")
    assert torch.allclose(ll, exact_log_likelihood(W, mu, sigma, x), atol=1e-9)
