import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO, TraceMeanField_ELBO
from pyro.optim import Adam

from pyrogen.infer import Trace_IWAE
from pyrogen.families import get
from pyrogen.models import LIKELIHOODS, VAE

SHAPE = (1, 8, 8)


def data_for(likelihood, n=32, shape=SHAPE):
    x = torch.rand(n, *shape)
    return torch.bernoulli(x) if likelihood == "bernoulli" else x


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize(
    "objective",
    [Trace_ELBO, TraceMeanField_ELBO, lambda: Trace_IWAE(num_particles=3)],
    ids=["Trace_ELBO", "TraceMeanField_ELBO", "Trace_IWAE"],
)
def test_svi_trains_with_pyro_objectives(likelihood, objective):
    vae = VAE(SHAPE, latent_dim=4, hidden=(32,), likelihood=likelihood)
    x = data_for(likelihood)
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-2}), objective())
    before = [p.detach().clone() for p in vae.parameters()]
    losses = [svi.step(x, num_data=320) for _ in range(30)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) < sum(losses[:5])
    moved = [not torch.equal(b, p) for b, p in zip(before, vae.parameters())]
    assert all(moved), "SVI must move every parameter of the model and the guide"


def test_conv_vae_svi_step():
    vae = VAE((1, 28, 28), latent_dim=8, arch="conv")
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), Trace_ELBO())
    assert torch.isfinite(torch.tensor(svi.step(torch.bernoulli(torch.rand(4, 1, 28, 28)))))


def test_elbo_module_sees_every_parameter():
    vae = VAE(SHAPE, latent_dim=4, hidden=(16,), likelihood="gaussian")
    module = Trace_ELBO()(vae.model, vae.guide)
    assert {id(p) for p in module.parameters()} == {id(p) for p in vae.parameters()}


def test_loss_differentiable_loss_and_step_agree():
    vae = VAE(SHAPE, latent_dim=4, hidden=(16,))
    x = data_for("bernoulli")
    elbo = Trace_ELBO()
    pyro.set_rng_seed(3)
    loss = elbo.loss(vae.model, vae.guide, x, num_data=100)
    pyro.set_rng_seed(3)
    diff = elbo.differentiable_loss(vae.model, vae.guide, x, num_data=100).item()
    pyro.set_rng_seed(3)
    step = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), elbo).step(x, num_data=100)
    assert loss == pytest.approx(diff, rel=1e-6)
    assert step == pytest.approx(loss, rel=1e-6)


def test_minibatch_scaling_by_data_plate():
    vae = VAE(SHAPE, latent_dim=4, hidden=(16,))
    x = data_for("bernoulli", n=10)
    pyro.set_rng_seed(1)
    full = Trace_ELBO().loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(1)
    scaled = Trace_ELBO().loss(vae.model, vae.guide, x, num_data=1000)
    assert scaled == pytest.approx(100 * full, rel=1e-5)


def test_beta_scales_the_kl_term_exactly():
    vae = VAE(SHAPE, latent_dim=4, hidden=(16,))
    x = data_for("bernoulli", n=8)
    loc, scale = vae.encode(x)
    kl = (0.5 * (loc**2 + scale**2 - 1) - scale.log()).sum().item()
    losses = {}
    for beta in (1.0, 2.5):
        pyro.set_rng_seed(7)
        losses[beta] = TraceMeanField_ELBO().loss(vae.model, vae.guide, x, beta=beta)
    assert losses[2.5] - losses[1.0] == pytest.approx(1.5 * kl, rel=1e-4)


@pytest.mark.parametrize("beta", [0.0, -1.0])
def test_non_positive_beta_is_rejected(beta):
    vae = VAE(SHAPE, latent_dim=4, hidden=(16,))
    with pytest.raises(ValueError, match="beta must be > 0"):
        Trace_ELBO().loss(vae.model, vae.guide, data_for("bernoulli"), beta=beta)


def test_bad_input_shapes_and_arguments():
    vae = VAE(SHAPE, latent_dim=4, hidden=(16,))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 1, 8, 8\), got \(4, 64\)"):
        vae.model(torch.zeros(4, 64))
    with pytest.raises(ValueError, match="num_data must be at least"):
        vae.model(torch.zeros(4, *SHAPE), num_data=2)
    with pytest.raises(ValueError, match="latent_dim"):
        VAE(SHAPE, latent_dim=0)
    with pytest.raises(ValueError, match="likelihood must be one of"):
        VAE(SHAPE, likelihood="poisson")
    with pytest.raises(ValueError, match="model family must be one of"):
        get("flow")


def test_facade_sample_reconstruct_encode():
    vae = VAE(SHAPE, latent_dim=4, hidden=(16,))
    x = data_for("bernoulli", n=5)
    assert vae.sample(6).shape == (6, *SHAPE)
    rec = vae.reconstruct(x)
    assert rec.shape == x.shape and 0 <= rec.min() and rec.max() <= 1
    loc, scale = vae.encode(x)
    assert loc.shape == scale.shape == (5, 4) and (scale > 0).all()
    assert get("vae").rebuild(vae.config).config == vae.config


def test_everything_follows_the_module_dtype_and_device():
    vae = VAE(SHAPE, latent_dim=4, hidden=(16,), likelihood="gaussian").to(torch.float64)
    x = data_for("gaussian").double()
    assert vae.sample(3).dtype == torch.float64
    assert Trace_ELBO().differentiable_loss(vae.model, vae.guide, x).dtype == torch.float64
    assert vae.model.prior_loc.dtype == torch.float64  # a buffer, so .to() moves it


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_step_and_sample():
    vae = VAE(SHAPE, latent_dim=4, hidden=(16,)).cuda()
    x = data_for("bernoulli").cuda()
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), Trace_ELBO())
    assert torch.isfinite(torch.tensor(svi.step(x, num_data=100)))
    assert vae.sample(2).device.type == "cuda"


def test_posterior_predictive_needs_uncondition():
    vae = VAE(SHAPE, latent_dim=4, hidden=(16,))
    x = data_for("bernoulli", n=6)
    draws = Predictive(poutine.uncondition(vae.model), guide=vae.guide, num_samples=3)(x)["x"]
    assert draws.shape == (3, 6, *SHAPE)
    assert not torch.equal(draws[0], x)


def test_continuous_bernoulli_is_normalised():
    vae = VAE((1, 1, 1), latent_dim=1, hidden=(4,), likelihood="continuous-bernoulli")
    d = vae.model.likelihood(torch.tensor([[[[1.3]]]]))
    grid = torch.linspace(0, 1, 20001).reshape(-1, 1, 1, 1, 1)
    density = d.log_prob(grid).exp().squeeze()
    assert torch.trapezoid(density, dx=1 / 20000).item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("data_shape", [(1, 5, 5), (784,), (3, 4, 4)])
def test_bernoulli_evaluation_form_equals_the_cross_entropy(data_shape):
    """Without gradients the Bernoulli likelihood sums x l - softplus(l) with one logarithm per
    block of 16 pixels (padded where the pixels are not a multiple of 16); it must equal the
    cross-entropy form, extreme logits and broadcasting over particles included."""
    from pyrogen.models.likelihoods import BernoulliLikelihood

    torch.manual_seed(0)
    likelihood = BernoulliLikelihood(data_shape)
    logits = torch.randn(7, 5, *data_shape, dtype=torch.float64) * 6
    logits.flatten(-len(data_shape))[..., :3] = torch.tensor([90.0, -90.0, 0.0], dtype=torch.float64)
    x = torch.bernoulli(torch.rand(5, *data_shape, dtype=torch.float64))
    exact = (x * logits - torch.nn.functional.softplus(logits)).flatten(2).sum(-1)
    with torch.no_grad():
        fast = likelihood(logits).log_prob(x)
    assert fast.shape == (7, 5)
    assert torch.allclose(fast, exact, atol=1e-9, rtol=1e-12)
    # float32, as the models run: within float rounding of the sum
    with torch.no_grad():
        fast32 = likelihood(logits.float()).log_prob(x.float())
    assert torch.allclose(fast32.double(), exact, atol=2e-3, rtol=0)
    # with gradients: the cross-entropy form, whose gradient is x - sigmoid(l)
    logits.requires_grad_(True)
    likelihood(logits).log_prob(x).sum().backward()
    assert torch.allclose(logits.grad, (x - torch.sigmoid(logits)).detach())
