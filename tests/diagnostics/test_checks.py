import math

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from ppca import exact_log_likelihood, make_ppca, ppca_pair, sample_ppca
from pyrogen.diagnostics import (
    aggregate_posterior_kl,
    importance_ess,
    khat_threshold,
    latent_usage,
    pareto_khat,
    pointwise,
    ppc_pvalues,
    ppc_statistics,
    to_inference_data,
    worst_points,
)
from pyrogen.diagnostics._arviz import make_inference_data, psislw
from pyrogen.models import VAE

K = 2000  # draws per point: the k-hat threshold is 0.70 from about 2200, 0.697 here


def ppca_idata(guide_scale=1.0, exact=True, n=40, num_samples=K, shift=0.0):
    W, mu, sigma = make_ppca()
    model, guide = ppca_pair(W, mu, sigma, exact_guide=exact)
    with torch.no_grad():
        guide.encoder.log_scale.add_(math.log(guide_scale))
        guide.encoder.linear.bias.add_(shift)
    x = sample_ppca(W, mu, sigma, n)
    return to_inference_data(model, guide, x, num_samples=num_samples), W, mu, sigma, x


def test_khat_threshold_closed_form():
    assert khat_threshold(100) == pytest.approx(0.5)
    assert khat_threshold(1000) == pytest.approx(2 / 3)
    assert khat_threshold(10_000) == 0.7
    with pytest.raises(ValueError, match="num_samples must be an integer >= 2"):
        khat_threshold(1)


def test_exact_posterior_guide_low_khat_full_ess_no_gap():
    idata, W, mu, sigma, x = ppca_idata()
    table = pointwise(idata)
    # every weight equals p(x): no tail at all, all draws count, the ELBO is the likelihood
    assert (table["khat"] < khat_threshold(K)).all()
    np.testing.assert_allclose(table["ess"], K, rtol=1e-9)
    np.testing.assert_allclose(table["gap"], 0.0, atol=1e-9)
    np.testing.assert_allclose(table["log_likelihood"],
                               exact_log_likelihood(W, mu, sigma, x).numpy(), atol=1e-9)


def test_wider_guide_keeps_khat_low_and_ess_high():
    # 1.5x too wide and off-centre: bounded weights, k-hat well below the threshold
    idata, *_ = ppca_idata(exact=False)
    khat, ess = pareto_khat(idata).values, importance_ess(idata).values
    assert np.median(khat) < 0.5 and (khat < khat_threshold(K)).mean() > 0.9
    assert np.median(ess) > 0.2 * K


def test_too_narrow_guide_exceeds_the_threshold():
    # the posterior scale halved: weights with infinite variance, k = 1 - 0.5^2 = 0.75 in theory
    idata, *_ = ppca_idata(guide_scale=0.5)
    khat, ess = pareto_khat(idata).values, importance_ess(idata).values
    assert np.median(khat) > khat_threshold(K)
    assert np.median(ess) < 0.2 * K
    table = pointwise(idata)
    assert (table["gap"] > 0).all()
    worst = worst_points(table, 5)
    assert list(worst["khat"]) == sorted(table["khat"], reverse=True)[:5]
    assert list(worst_points(table, 3, by="ess")["ess"]) == sorted(table["ess"])[:3]
    with pytest.raises(ValueError, match="by must be"):
        worst_points(table, by="loss")


def test_khat_from_an_array_matches_arviz_per_point():
    rng = np.random.default_rng(0)
    light = rng.normal(scale=0.2, size=(1000, 1))            # (K, points), light tail
    heavy = np.log(rng.pareto(1 / 0.9, size=(1000, 1)) + 1)  # a Pareto tail with k = 0.9
    khat = pareto_khat(np.concatenate([light, heavy], axis=1)).values
    assert khat[0] < 0.3 and 0.7 < khat[1] < 1.1
    with pytest.raises(ValueError, match=r"log weights must have shape \(num_samples, num_points\)"):
        pareto_khat(np.zeros(5))


def test_importance_ess_closed_form():
    lw = np.log(np.array([[1.0, 1.0], [1.0, 1e-30], [1.0, 1e-30], [1.0, 1e-30]]))  # (K=4, 2)
    np.testing.assert_allclose(importance_ess(lw).values, [4.0, 1.0], rtol=1e-9)


def test_psislw_flat_weights_get_minus_infinity_and_uniform_weights():
    lw, k = psislw(np.array([[2.0] * 50, list(np.linspace(0, 3, 50))]))
    assert k[0] == -np.inf and np.isfinite(k[1])
    np.testing.assert_allclose(np.exp(lw[0]), 1 / 50)
    np.testing.assert_allclose(np.exp(lw).sum(axis=1), 1.0)


def test_latent_usage_kl_matches_torch_and_finds_collapsed_units():
    torch.manual_seed(0)
    vae = VAE((6,), latent_dim=3, hidden=(8,), likelihood="gaussian")
    enc = vae.guide.encoder
    x = torch.randn(64, 6)
    # unit 2 collapsed: its loc ignores x (activity 0) and equals the prior (KL 0)
    head = enc.net.layers[-1] if hasattr(enc.net, "layers") else list(enc.modules())[-1]
    with torch.no_grad():
        head.weight[2].zero_()
        head.bias[2] = 0.0
        head.weight[5].zero_()
        head.bias[5] = math.log(math.e - 1)  # softplus^-1(1) ~ scale 1 (+ min_scale)
    idata = to_inference_data(vae.model, vae.guide, x, num_samples=4)
    usage = latent_usage(idata)
    with torch.no_grad():
        loc, scale = enc(x)
    kl = torch.distributions.kl_divergence(torch.distributions.Normal(loc, scale),
                                           torch.distributions.Normal(0.0, 1.0)).mean(0)
    np.testing.assert_allclose(usage["kl"], kl.double().numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(usage["activity"], loc.double().var(0, correction=0).numpy(),
                               rtol=1e-4)
    assert list(usage["active"]) == [True, True, False]
    assert usage["kl"][2] == pytest.approx(0.0, abs=1e-3)


def test_aggregate_posterior_of_the_exact_posterior_is_the_prior():
    idata, *_ = ppca_idata(n=4000, num_samples=2)
    assert aggregate_posterior_kl(idata) < 0.01
    # codes shifted by 0.5 in both dimensions: KL = 2 * 0.5^2 / 2 = 0.25 nats
    shifted, *_ = ppca_idata(n=4000, num_samples=2, shift=0.5)
    assert aggregate_posterior_kl(shifted) == pytest.approx(0.25, abs=0.05)


def test_aggregate_posterior_kl_closed_form():
    # every q(z|x_n) = N(m_n, s^2): the moment fit is N(mean m, s^2 + var m), prior N(0, 1)
    qm = np.array([[1.0], [3.0]])
    groups = {"latent_moments": xr.Dataset({
        "z_q_mean": (("obs", "latent"), qm), "z_q_std": (("obs", "latent"), np.full((2, 1), 0.5)),
        "z_prior_mean": (("obs", "latent"), np.zeros((2, 1))),
        "z_prior_std": (("obs", "latent"), np.ones((2, 1)))})}
    var = 0.25 + 1.0
    expected = 0.5 * (var + 2.0**2 - 1 - math.log(var))
    assert aggregate_posterior_kl(make_inference_data(groups)) == pytest.approx(expected)


def test_latent_usage_needs_gaussian_moments():
    groups = {"posterior": xr.Dataset({"z": (("chain", "draw", "obs"), np.zeros((1, 2, 3)))})}
    with pytest.raises(ValueError, match="no Gaussian moments of 'z'"):
        latent_usage(make_inference_data(groups))


def test_ppc_statistics_and_pvalues():
    vae = VAE((1, 4, 4), latent_dim=2, hidden=(8,))
    x = torch.bernoulli(torch.full((10, 1, 4, 4), 0.5))
    idata = to_inference_data(vae.model, vae.guide, x, num_samples=20)
    stats = ppc_statistics(idata)
    pp, obs = stats.posterior_predictive, stats.observed_data
    assert pp["mean_intensity"].dims == ("chain", "draw", "obs")
    assert pp["pixel_marginal"].dims == ("chain", "draw", "pixel")
    assert obs["pixel_marginal"].shape == (16,)
    np.testing.assert_allclose(obs["mean_intensity"], x.mean((1, 2, 3)).numpy(), rtol=1e-6)
    np.testing.assert_allclose(obs["pixel_marginal"], x.mean(0).flatten().numpy(), rtol=1e-6)
    p = ppc_pvalues(stats)
    assert 0 <= p["mean_intensity_pvalue"] <= 1 and 0 <= p["pixel_marginal_extreme_share"] <= 1


def test_ppc_pvalues_mid_p_counts_ties_as_half():
    zeros = np.zeros((1, 5, 3))
    groups = {"posterior_predictive": xr.Dataset({"mean_intensity": (("chain", "draw", "obs"), zeros)}),
              "observed_data": xr.Dataset({"mean_intensity": (("obs",), np.zeros(3))})}
    assert ppc_pvalues(make_inference_data(groups))["mean_intensity_pvalue"] == 0.5
    groups["observed_data"]["mean_intensity"][:] = 1.0
    assert ppc_pvalues(make_inference_data(groups))["mean_intensity_pvalue"] == 0.0


def test_pointwise_has_labels_and_sorted_index():
    W, mu, sigma = make_ppca()
    model, guide = ppca_pair(W, mu, sigma, exact_guide=False)
    x = sample_ppca(W, mu, sigma, 6)
    idata = to_inference_data(model, guide, x, num_samples=100, labels=[0, 1, 0, 1, 2, 2])
    table = pointwise(idata)
    assert isinstance(table, pd.DataFrame) and table.index.name == "obs"
    assert list(table.columns) == ["label", "khat", "ess", "log_likelihood", "elbo",
                                   "reconstruction", "gap"]
    assert list(table["label"]) == [0, 1, 0, 1, 2, 2]


def test_khat_and_ess_take_the_estimators_tensors():
    from pyrogen.infer import log_importance_weights

    W, mu, sigma = make_ppca()
    model, guide = ppca_pair(W, mu, sigma, exact_guide=False)
    x = sample_ppca(W, mu, sigma, 4)
    log_w, _ = log_importance_weights(model, guide, x, num_particles=500)  # (K, points), grad
    assert log_w.requires_grad
    array = log_w.detach().numpy()
    np.testing.assert_array_equal(pareto_khat(log_w).values, pareto_khat(array).values)
    np.testing.assert_allclose(importance_ess(log_w).values, importance_ess(array).values)
