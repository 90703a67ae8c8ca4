import warnings

import numpy as np
import pyro
import pytest
import torch

from pyrogen.infer.em import e_step, exact_em, generalised_em
from pyrogen.models import Mixture

K = 3


def gaussian_data(n_per=100, seed=0):
    """Three overlapping, correlated clusters in 3-D (300 points, float64)."""
    rng = np.random.RandomState(seed)
    centres = np.array([[0.0, 0.0, 0.0], [4.0, 1.0, -2.0], [-3.0, 3.0, 1.0]])
    return np.concatenate([c + 0.7 * rng.randn(n_per, 3) @ rng.randn(3, 3) for c in centres])


def gaussian_start(covariance):
    weights = np.array([0.2, 0.3, 0.5])
    means = np.array([[1.0, 0.5, 0.5], [2.0, 2.0, -1.0], [-2.0, 2.0, 2.0]])
    variances = np.array([1.0, 2.0, 3.0])[:, None] * np.ones((K, 3))
    cov = np.stack([np.diag(v) for v in variances]) if covariance == "full" else variances
    return weights, means, cov


def planted_bernoulli(n=600, d=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    patterns = torch.zeros(K, d, dtype=torch.float64)
    for k in range(K):
        patterns[k, k * d // K:(k + 1) * d // K] = 1
    probs = 0.1 + 0.8 * patterns
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    z = torch.multinomial(weights, n, replacement=True, generator=g)
    return torch.bernoulli(probs[z], generator=g), weights, probs


def gaussian_mixture(covariance, reg_covar=1e-6):
    mixture = Mixture((3,), K, "gaussian", covariance, reg_covar=reg_covar).double()
    weights, means, cov = (torch.tensor(a) for a in gaussian_start(covariance))
    mixture.set_params(weights=weights, means=means, covariances=cov)
    return mixture


@pytest.mark.parametrize("covariance", ["full", "diag"])
@pytest.mark.parametrize("tol,max_iter", [(0.0, 25), (1e-3, 200)], ids=["fixed-iters", "tol"])
def test_exact_em_matches_sklearn(covariance, tol, max_iter):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    x = gaussian_data()
    weights, means, cov = gaussian_start(covariance)
    precisions = np.linalg.inv(cov) if covariance == "full" else 1 / cov
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tol=0 never "converges"
        sk = GaussianMixture(K, covariance_type=covariance, tol=tol, max_iter=max_iter,
                             reg_covar=1e-6, weights_init=weights, means_init=means,
                             precisions_init=precisions).fit(x)
    mixture = gaussian_mixture(covariance)
    history = exact_em(mixture, torch.tensor(x), num_iters=max_iter, tol=tol)
    assert len(history) - 1 == sk.n_iter_
    if tol > 0:
        assert sk.n_iter_ < max_iter  # the stopping rule was exercised
    assert history[-1] == pytest.approx(sk.score(x), rel=1e-9)
    assert history[-2] == pytest.approx(sk.lower_bound_, rel=1e-9)
    params = mixture.model.params()
    for ours, theirs in [(params["log_weights"].exp(), sk.weights_), (params["loc"], sk.means_),
                         (mixture.model.covariances(), sk.covariances_)]:
        np.testing.assert_allclose(ours.detach().numpy(), theirs, rtol=1e-7, atol=1e-10)


def assert_non_decreasing(history, atol=1e-12):
    steps = np.diff(history)
    assert steps.min() >= -atol * max(1.0, abs(history[0])), f"log-likelihood fell by {-steps.min()}"


@pytest.mark.parametrize("case", ["full", "diag", "bernoulli"])
def test_exact_em_never_lowers_the_likelihood(case):
    if case == "bernoulli":
        x = planted_bernoulli()[0]
        mixture = Mixture((24,), K, "bernoulli").double()
        mixture.init_from_data(x, "random", seed=1)
    else:
        # reg_covar > 0 makes the M-step a regularised one, which need not raise log p(x)
        x = torch.tensor(gaussian_data())
        mixture = gaussian_mixture(case, reg_covar=0.0)
    history = exact_em(mixture, x, num_iters=60, tol=0.0)
    assert len(history) == 61
    assert_non_decreasing(history)
    assert history[-1] > history[0] + 0.1


@pytest.mark.parametrize("case", ["full", "diag", "bernoulli"])
def test_generalised_em_with_small_gradient_steps_never_lowers_the_likelihood(case):
    # plain gradient descent on the exact -Q (enumerated, full batch) with a step
    # well below 2 / (its curvature) raises Q, hence log p(x); Adam is not guaranteed to
    if case == "bernoulli":
        x = planted_bernoulli(n=300)[0]
        mixture = Mixture((24,), K, "bernoulli").double()
        mixture.init_from_data(x, "random", seed=1)
    else:
        x = torch.tensor(gaussian_data())
        mixture = gaussian_mixture(case)
    history = generalised_em(mixture, x, num_iters=15, steps_per_iter=4, loss="enum",
                             optim=pyro.optim.SGD({"lr": 1e-3}))
    assert len(history) == 16
    assert_non_decreasing(history)
    assert history[-1] > history[0] + 0.02


def test_generalised_em_m_step_reaches_the_closed_form_m_step():
    """Many gradient steps against the posterior held fixed converge to argmax Q,
    the exact M-step, not to the maximum-likelihood point."""
    x = planted_bernoulli(n=200, d=6)[0]
    start = Mixture((6,), K, "bernoulli").double()
    start.init_from_data(x, "random", seed=2)
    exact = Mixture(**start.config).double()
    exact.load_state_dict(start.state_dict())
    _, resp = e_step(exact, x)
    exact.model.m_step(x, resp)
    history = generalised_em(start, x, num_iters=1, steps_per_iter=400, loss="enum", lr=0.05)
    ours, theirs = start.model.params(), exact.model.params()
    assert torch.allclose(ours["log_weights"].exp(), theirs["log_weights"].exp(), atol=1e-3)
    assert torch.allclose(ours["logits"].sigmoid(), theirs["logits"].sigmoid(), atol=1e-3)
    assert history[1] == pytest.approx(exact_em(exact, x, num_iters=1)[0], abs=1e-5)


def test_generalised_em_stochastic_minibatch_improves():
    x = torch.tensor(gaussian_data())
    mixture = gaussian_mixture("full")
    history = generalised_em(mixture, x, num_iters=20, steps_per_iter=3, loss="trace",
                             lr=2e-2, batch_size=64, num_particles=2)
    assert np.isfinite(history).all()
    assert history[-1] > history[0] + 0.1


def test_exact_em_recovers_planted_bernoulli_components():
    x, weights, probs = planted_bernoulli()
    mixture = Mixture((24,), K, "bernoulli").double()
    mixture.init_from_data(x, "kmeans++", seed=0)
    history = exact_em(mixture, x, num_iters=100, tol=1e-10)
    assert history[-1] > history[0]
    params = mixture.model.params()
    fitted = params["logits"].sigmoid().detach()
    match = torch.cdist(probs, fitted).argmin(1)  # planted k -> fitted component
    assert sorted(match.tolist()) == list(range(K))
    assert (fitted[match] - probs).abs().max() < 0.1
    assert (params["log_weights"].exp()[match] - weights).abs().max() < 0.06
    truth = Mixture((24,), K, "bernoulli").double()
    truth.set_params(weights=weights, probs=probs)
    assert history[-1] >= truth.log_likelihood(x).mean().item()  # a maximum of the likelihood


def test_generalised_em_ignores_stale_params_of_another_model():
    x = torch.tensor(gaussian_data())
    first, second = gaussian_mixture("full"), gaussian_mixture("full")
    generalised_em(first, x, num_iters=1, loss="enum")  # leaves its "loc", ... in the param store
    before = second.model.loc.detach().clone()
    generalised_em(second, x, num_iters=2, loss="enum")
    assert not torch.equal(second.model.loc, before)
    store = pyro.get_param_store()
    assert any(store[name] is second.model.loc for name in store.keys())


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda m, x: exact_em(m, x, num_iters=0), ValueError, "num_iters"),
        (lambda m, x: exact_em(m, x, tol=-1.0), ValueError, "tol"),
        (lambda m, x: exact_em(m, x[:, :2]), ValueError, r"x must have shape \(batch, 3\)"),
        (lambda m, x: exact_em(torch.nn.Linear(2, 2), x), TypeError, "Mixture"),
        (lambda m, x: generalised_em(m, x, loss="elbo"), ValueError, "loss"),
        (lambda m, x: generalised_em(m, x, steps_per_iter=0), ValueError, "steps_per_iter"),
        (lambda m, x: generalised_em(m, x, batch_size=0), ValueError, "batch_size"),
        (lambda m, x: generalised_em(m, x, lr=0.0), ValueError, "lr"),
    ],
    ids=["num_iters", "tol", "shape", "not-a-mixture", "loss", "steps", "batch_size", "lr"],
)
def test_bad_arguments_raise_before_any_work(call, error, match):
    mixture = gaussian_mixture("full")
    before = mixture.state_dict()
    with pytest.raises(error, match=match):
        call(mixture, torch.tensor(gaussian_data()))
    for name, value in mixture.state_dict().items():
        assert torch.equal(value, before[name])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("component", ["gaussian", "bernoulli"])
def test_em_on_cuda(component):
    if component == "gaussian":
        x = torch.tensor(gaussian_data(), device="cuda")
        mixture = Mixture((3,), K, "gaussian").double().cuda()
    else:
        x = planted_bernoulli()[0].cuda()
        mixture = Mixture((24,), K, "bernoulli").double().cuda()
    mixture.init_from_data(x, seed=0)
    history = exact_em(mixture, x, num_iters=10)
    history += generalised_em(mixture, x, num_iters=2, steps_per_iter=2, loss="enum")
    history += generalised_em(mixture, x, num_iters=2, loss="trace", batch_size=32)
    assert np.isfinite(history).all()
    assert mixture.model.weight_logits.device.type == "cuda"
