import pyro
import pyro.poutine as poutine
import pytest
import torch
import torch.distributions as td
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO
from pyro.optim import Adam

from pyrogen.infer import log_likelihood
from pyrogen.models.mixture_posterior import Mixture, MixturePosterior

K = 3
CASES = [("gaussian", "full", (2,)), ("gaussian", "diag", (3,)), ("bernoulli", "full", (1, 3, 4))]
IDS = ["gaussian-full", "gaussian-diag", "bernoulli"]


def make(component, covariance, shape, n=40, seed=0):
    """A float64 mixture with random, distinct parameters, and data from another mixture."""
    g = torch.Generator().manual_seed(seed)
    mixture = Mixture(shape, K, component, covariance).double()
    weights = torch.softmax(torch.randn(K, generator=g, dtype=torch.float64), -1)
    if component == "gaussian":
        d = shape[0]
        a = torch.randn(K, d, d, generator=g, dtype=torch.float64)
        cov = a @ a.transpose(-1, -2) + 0.5 * torch.eye(d, dtype=torch.float64)
        cov = cov if covariance == "full" else cov.diagonal(dim1=-2, dim2=-1)
        mixture.set_params(weights=weights, covariances=cov,
                           means=2 * torch.randn(K, d, generator=g, dtype=torch.float64))
        x = 2 * torch.randn(n, d, generator=g, dtype=torch.float64)
    else:
        probs = 0.05 + 0.9 * torch.rand(K, *shape, generator=g, dtype=torch.float64)
        mixture.set_params(weights=weights, probs=probs)
        x = torch.bernoulli(torch.rand(n, *shape, generator=g, dtype=torch.float64), generator=g)
    return mixture, x


def brute_force_log_joint(mixture, x):
    """log p(x_n, z = k) from torch.distributions, one point and one component at a time."""
    p = mixture.model.params()
    out = torch.empty(x.shape[0], K, dtype=x.dtype)
    for n in range(x.shape[0]):
        for k in range(K):
            if "scale_tril" in p:
                comp = td.MultivariateNormal(p["loc"][k], covariance_matrix=mixture.model.covariances()[k])
            elif "scale" in p:
                comp = td.Independent(td.Normal(p["loc"][k], p["scale"][k]), 1)
            else:
                comp = td.Independent(td.Bernoulli(logits=p["logits"][k]), x.dim() - 1)
            out[n, k] = p["log_weights"][k] + comp.log_prob(x[n])
    return out.detach()


@pytest.mark.parametrize("component,covariance,shape", CASES, ids=IDS)
def test_posterior_and_log_likelihood_are_bayes_rule(component, covariance, shape):
    mixture, x = make(component, covariance, shape)
    joint = brute_force_log_joint(mixture, x)
    evidence = joint.exp().sum(-1)
    assert torch.allclose(mixture.posterior(x), joint.exp() / evidence[:, None], rtol=1e-10, atol=1e-14)
    assert torch.allclose(mixture.log_likelihood(x), evidence.log(), rtol=1e-10)


@pytest.mark.parametrize("component,covariance,shape", CASES, ids=IDS)
def test_model_trace_summed_over_z_is_log_likelihood(component, covariance, shape):
    mixture, x = make(component, covariance, shape)
    per_z = []
    for k in range(K):
        z = torch.full((x.shape[0],), k)
        trace = poutine.trace(poutine.condition(mixture.model, data={"z": z})).get_trace(x)
        trace.compute_log_prob()
        per_z.append(trace.nodes["z"]["log_prob"] + trace.nodes["x"]["log_prob"])
    log_px = torch.logsumexp(torch.stack(per_z, -1), -1)
    assert torch.allclose(log_px, mixture.log_likelihood(x), rtol=1e-12)


@pytest.mark.parametrize("component,covariance,shape", CASES, ids=IDS)
def test_elbo_is_tight_with_the_exact_posterior(component, covariance, shape):
    mixture, x = make(component, covariance, shape)
    neg_log_px = -mixture.log_likelihood(x).sum().item()
    # log p(x, z) - log p(z | x) = log p(x) for every z: each single draw is exact
    for seed in range(3):
        pyro.set_rng_seed(seed)
        assert Trace_ELBO().loss(mixture.model, mixture.guide, x) == pytest.approx(neg_log_px, rel=1e-10)
    vectorised = Trace_ELBO(num_particles=50, vectorize_particles=True, max_plate_nesting=1)
    assert vectorised.loss(mixture.model, mixture.guide, x) == pytest.approx(neg_log_px, rel=1e-10)
    iw = log_likelihood(mixture.model, mixture.guide, x, num_samples=5)
    assert torch.allclose(iw, mixture.log_likelihood(x), rtol=1e-10)


@pytest.mark.parametrize("component,covariance,shape", CASES, ids=IDS)
def test_trace_enum_loss_is_minus_q_plus_entropy(component, covariance, shape):
    mixture, x = make(component, covariance, shape)
    guide = MixturePosterior(mixture.model, enumerate=True)
    guide.e_step()
    resp = mixture.posterior(x)
    log_joint = mixture.model.log_joint(x).detach()
    q_at_old = (resp * log_joint).sum()
    entropy = -(resp * resp.log()).sum()
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    loss = elbo.loss(mixture.model, guide, x)
    assert loss == pytest.approx(-(q_at_old + entropy).item(), rel=1e-12)
    assert loss == pytest.approx(-mixture.log_likelihood(x).sum().item(), rel=1e-12)
    # move the model: the loss is -(Q(theta; theta_old) + H) with the posterior held at theta_old
    with torch.no_grad():
        mixture.model.weight_logits.add_(torch.arange(K, dtype=torch.float64))
    q_new = (resp * mixture.model.log_joint(x).detach()).sum()
    assert elbo.loss(mixture.model, guide, x) == pytest.approx(-(q_new + entropy).item(), rel=1e-12)
    assert mixture.log_likelihood(x).sum() >= q_new + entropy  # the bound below log p(x)


def test_guide_has_no_parameters_and_svi_moves_only_the_model():
    mixture, x = make("gaussian", "full", (2,))
    assert list(mixture.guide.parameters()) == []
    assert mixture.guide.state_dict() == {}
    guide_trace = poutine.trace(mixture.guide).get_trace(x)
    assert not guide_trace.nodes["z"]["fn"].logits.requires_grad
    module = Trace_ELBO()(mixture.model, mixture.guide)
    assert {id(p) for p in module.parameters()} == {id(p) for p in mixture.model.parameters()}
    before = {k: v.detach().clone() for k, v in mixture.model.named_parameters()}
    svi = SVI(mixture.model, mixture.guide, Adam({"lr": 1e-2}), Trace_ELBO())
    svi.step(x)
    store = pyro.get_param_store()
    stored = {name.split(".", 1)[1]: name for name in store.keys()}  # past the model's own prefix
    assert set(stored) == set(before)
    for name, param in mixture.model.named_parameters():
        assert not torch.equal(param, before[name]), f"SVI did not move {name}"
        assert pyro.param(stored[name]) is param


def test_e_step_holds_the_posterior_until_released():
    mixture, x = make("bernoulli", "full", (1, 3, 4))
    guide = mixture.guide
    old = mixture.posterior(x)
    guide.e_step()
    assert guide.fixed
    mixture.model.m_step(x, old)  # the model moves
    new = mixture.posterior(x)
    assert not torch.allclose(new, old, atol=1e-3)
    held = poutine.trace(guide).get_trace(x).nodes["z"]["fn"].probs
    assert torch.allclose(held, old, rtol=1e-12)
    guide.release()
    assert not guide.fixed
    assert torch.allclose(poutine.trace(guide).get_trace(x).nodes["z"]["fn"].probs, new, rtol=1e-12)


@pytest.mark.parametrize("component,covariance,shape", CASES, ids=IDS)
def test_config_rebuilds_and_sample(component, covariance, shape):
    mixture, x = make(component, covariance, shape)
    rebuilt = Mixture(**mixture.config).double()
    rebuilt.load_state_dict(mixture.state_dict())
    assert torch.allclose(rebuilt.log_likelihood(x), mixture.log_likelihood(x), rtol=1e-14)
    assert rebuilt.data_shape == tuple(shape) and rebuilt.num_components == K
    draws = mixture.sample(500)  # the default: draws x ~ p(x)
    assert draws.shape == (500, *shape) and draws.dtype == torch.float64
    means = mixture.sample(500, mean=True)  # component means, one per draw of z
    assert means.shape == (500, *shape)
    # every mean is one of the K component means
    flat, centres = means.reshape(500, -1), mixture.component_means().reshape(K, -1)
    assert (flat[:, None] - centres[None]).abs().amax(-1).min(dim=1).values.max() < 1e-12
    if component == "bernoulli":
        assert set(draws.unique().tolist()) == {0.0, 1.0}
        assert not set(means.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("method", ["kmeans++", "random"])
def test_init_from_data_is_seeded_and_finds_separated_clusters(method):
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], dtype=torch.float64)
    x = (centres[:, None] + torch.randn(3, 50, 2, dtype=torch.float64)).reshape(150, 2)
    a, b = (Mixture((2,), K, "gaussian").double() for _ in range(2))
    a.init_from_data(x, method, seed=3)
    b.init_from_data(x, method, seed=3)
    assert torch.equal(a.model.loc, b.model.loc)
    if method == "kmeans++":  # D^2 seeding all but surely puts one seed in each cluster
        nearest = torch.cdist(centres, a.model.loc.detach()).min(1).values
        assert (nearest < 1.0).all()


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: Mixture((2,), 0, "gaussian"), "num_components"),
        (lambda: Mixture((2,), -1, "bernoulli"), "num_components"),
        (lambda: Mixture((2,), 2, "gaussian", covariance="spherical"), "covariance"),
        (lambda: Mixture((2,), 2, "poisson"), "component"),
        (lambda: Mixture((1, 8, 8), 2, "gaussian"), "flat vectors"),
        (lambda: Mixture((2,), 2, "gaussian", reg_covar=-1.0), "reg_covar"),
        (lambda: Mixture((4,), 2, "bernoulli", eps=0.5), "eps"),
    ],
    ids=["K=0", "K<0", "covariance", "component", "gaussian-image", "reg_covar", "eps"],
)
def test_bad_construction_raises(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_bad_data_raises():
    gmm = Mixture((2,), 2, "gaussian")
    bmm = Mixture((1, 2, 2), 2, "bernoulli")
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2\), got \(5, 3\)"):
        gmm.log_likelihood(torch.randn(5, 3))
    with pytest.raises(ValueError, match="binary"):
        bmm.log_likelihood(torch.rand(5, 1, 2, 2))
    with pytest.raises(ValueError, match="x is on meta but the model on cpu"):
        gmm.log_likelihood(torch.empty(5, 2, device="meta"))
    with pytest.raises(ValueError, match="binary"):
        bmm.init_from_data(torch.rand(5, 1, 2, 2))
    with pytest.raises(ValueError, match="at least num_components"):
        gmm.init_from_data(torch.randn(1, 2))
    with pytest.raises(ValueError, match="method"):
        gmm.init_from_data(torch.randn(9, 2), method="kmeans")
    with pytest.raises(ValueError, match="positive definite"):
        gmm.set_params(covariances=torch.zeros(2, 2, 2))
    with pytest.raises(ValueError, match="sum to 1"):
        gmm.set_params(weights=torch.tensor([0.5, 0.6]))
    with pytest.raises(ValueError, match="resp must have shape"):
        gmm.model.m_step(torch.randn(4, 2), torch.ones(4, 3) / 3)
    with pytest.raises(ValueError, match="num_samples"):
        gmm.model()
    with pytest.raises(TypeError, match="MixtureModel"):
        MixturePosterior(torch.nn.Linear(2, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_model_guide_and_svi():
    mixture = Mixture((1, 3, 4), K, "bernoulli").cuda()
    x = torch.bernoulli(torch.rand(20, 1, 3, 4, device="cuda"))
    mixture.init_from_data(x, seed=0)
    svi = SVI(mixture.model, mixture.guide, Adam({"lr": 1e-2}), Trace_ELBO())
    assert torch.isfinite(torch.tensor(svi.step(x)))
    assert mixture.log_likelihood(x).device.type == "cuda"
    assert mixture.sample(2).device.type == "cuda"
