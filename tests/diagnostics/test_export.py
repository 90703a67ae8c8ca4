import numpy as np
import pytest
import torch
import xarray as xr

from ppca import exact_log_likelihood, make_ppca, ppca_pair, sample_ppca
from pyrogen.diagnostics import from_netcdf, history_dataset, to_inference_data, to_netcdf
from pyrogen.diagnostics._arviz import arviz, get_group, group_names, make_inference_data
from pyrogen.infer import log_importance_weights
from pyrogen.models import VAE

GROUPS = ["posterior", "posterior_predictive", "log_likelihood", "sample_stats", "prior",
          "prior_predictive", "observed_data", "latent_moments"]


@pytest.fixture
def image_idata():
    vae = VAE((1, 8, 8), latent_dim=3, hidden=(16,))
    x = torch.bernoulli(torch.rand(7, 1, 8, 8))
    labels = torch.tensor([3, 1, 4, 1, 5, 9, 2])
    history = [{"epoch": 1, "train_loss": 50.0, "binarize": "dynamic"},
               {"epoch": 2, "train_loss": 45.0, "valid_loss": 44.0, "binarize": "dynamic"}]
    idata = to_inference_data(vae.model, vae.guide, x, labels=labels, num_samples=6,
                              num_predictive=4, batch_size=3, history=history,
                              obs_index=range(10, 17))
    return vae, x, labels, idata


def test_groups_dims_and_coords_are_named_as_documented(image_idata):
    _, x, labels, idata = image_idata
    assert isinstance(idata, arviz().InferenceData)
    assert group_names(idata) == GROUPS + ["training_history"]
    image = ("channel", "row", "column")
    assert idata.posterior["z"].dims == ("chain", "draw", "obs", "latent")
    assert idata.posterior["z"].shape == (1, 6, 7, 3)
    assert idata.prior["z"].shape == (1, 4, 7, 3)
    assert idata.posterior_predictive["x"].dims == ("chain", "draw", "obs") + image
    assert idata.posterior_predictive["x"].shape == (1, 4, 7, 1, 8, 8)
    assert idata.prior_predictive["x"].dims == ("chain", "draw", "obs") + image
    assert idata.log_likelihood["x"].dims == ("chain", "draw", "obs")
    assert idata.sample_stats["log_weight"].dims == ("chain", "draw", "obs")
    assert idata.observed_data["x"].dims == ("obs",) + image
    assert idata.latent_moments["z_q_std"].dims == ("obs", "latent")
    for group in GROUPS:
        ds = getattr(idata, group)
        assert list(ds["obs"].values) == list(range(10, 17))
        assert list(ds["label"].values) == labels.tolist()
    assert list(idata.posterior["draw"].values) == list(range(6))
    assert list(idata.posterior["chain"].values) == [0]
    history = idata.training_history
    assert list(history["epoch"].values) == [1, 2]
    assert np.isnan(history["valid_loss"].values[0]) and history["valid_loss"].values[1] == 44.0
    assert history.attrs["binarize"] == "dynamic"


def test_observed_and_predictive_draws(image_idata):
    vae, x, _, idata = image_idata
    np.testing.assert_array_equal(idata.observed_data["x"].values, x.numpy())
    pp = idata.posterior_predictive["x"].values
    # binary pixels are stored as int8 (ArviZ plots refuse unsigned types), fresh draws, not x
    assert pp.dtype == np.int8 and set(np.unique(pp)) <= {0, 1}
    assert not all(np.array_equal(pp[0, k], x.numpy()) for k in range(pp.shape[1]))
    # the guide's moments: scale > 0, the prior's N(0, I)
    assert (idata.latent_moments["z_q_std"].values > 0).all()
    assert (idata.latent_moments["z_prior_mean"].values == 0).all()
    assert (idata.latent_moments["z_prior_std"].values == 1).all()
    # log p(x|z) recomputed from the stored draws of z
    z = torch.as_tensor(idata.posterior["z"].values[0])
    with torch.no_grad():
        expected = vae.model.likelihood(vae.model.decoder(z)).log_prob(x)
    np.testing.assert_allclose(idata.log_likelihood["x"].values[0], expected.numpy(), rtol=1e-5)


def test_log_weights_match_the_estimator():
    vae = VAE((1, 8, 8), latent_dim=3, hidden=(16,))
    x = torch.bernoulli(torch.rand(5, 1, 8, 8))
    torch.manual_seed(3)
    idata = to_inference_data(vae.model, vae.guide, x, num_samples=4, num_predictive=4)
    torch.manual_seed(3)
    with torch.no_grad():
        log_w, _ = log_importance_weights(vae.model, vae.guide, x, num_particles=4)
    np.testing.assert_allclose(idata.sample_stats["log_weight"].values[0], log_w.numpy(),
                               rtol=1e-5)


def test_exact_posterior_gives_the_exact_likelihood_in_every_weight():
    W, mu, sigma = make_ppca()
    model, guide = ppca_pair(W, mu, sigma, exact_guide=True)
    x = sample_ppca(W, mu, sigma, 20)
    idata = to_inference_data(model, guide, x, num_samples=50)
    exact = exact_log_likelihood(W, mu, sigma, x).numpy()
    lw = idata.sample_stats["log_weight"].values[0]
    np.testing.assert_allclose(lw, np.broadcast_to(exact, lw.shape), atol=1e-9)
    assert idata.observed_data["x"].dims == ("obs", "feature")
    assert idata.observed_data["x"].dtype == np.float64  # continuous data are not compacted


@pytest.mark.parametrize("legacy", [True, False], ids=["InferenceData", "DataTree"])
def test_netcdf_round_trip(image_idata, tmp_path, legacy):
    _, _, _, idata = image_idata
    groups = {name: get_group(idata, name) for name in group_names(idata)}
    wrapped = make_inference_data(groups, legacy=legacy)
    assert isinstance(wrapped, arviz().InferenceData if legacy else xr.DataTree)
    path = to_netcdf(wrapped, tmp_path / "idata.nc")
    assert not list(tmp_path.glob("*.tmp"))
    back = from_netcdf(path, legacy=legacy)
    assert group_names(back) == group_names(idata)
    for name in group_names(idata):
        xr.testing.assert_identical(get_group(back, name), get_group(idata, name).assign_attrs(
            get_group(back, name).attrs))
        assert get_group(back, name).attrs == get_group(idata, name).attrs
    # ArviZ itself opens the file
    assert set(arviz().from_netcdf(path).groups()) == set(group_names(idata))


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_samples=0), "num_samples must be a positive integer"),
    (dict(num_samples=4, num_predictive=5), "must not exceed num_samples"),
    (dict(batch_size=0), "batch_size"),
    (dict(labels=torch.zeros(3)), r"labels must have shape \(5,\)"),
    (dict(obs_index=range(4)), "obs_index must have one entry per data point"),
])
def test_bad_arguments_are_named(kwargs, message):
    vae = VAE((1, 8, 8), latent_dim=3, hidden=(16,))
    with pytest.raises(ValueError, match=message):
        to_inference_data(vae.model, vae.guide, torch.zeros(5, 1, 8, 8), **kwargs)


def test_bad_data_is_named():
    vae = VAE((1, 8, 8), latent_dim=3, hidden=(16,))
    with pytest.raises(ValueError, match=r"data must be a tensor of shape \(N, \*data_shape\)"):
        to_inference_data(vae.model, vae.guide, [1, 2, 3])
    with pytest.raises(ValueError, match="data is empty"):
        to_inference_data(vae.model, vae.guide, torch.zeros(0, 1, 8, 8))


def test_history_dataset_needs_records():
    with pytest.raises(ValueError, match="history is empty"):
        history_dataset([])
    ds = history_dataset([{"train_loss": 2.0}, {"train_loss": 1.0}])
    assert list(ds["epoch"].values) == [1, 2]


def test_data_on_another_device_than_the_model_is_named():
    vae = VAE((1, 8, 8), latent_dim=3, hidden=(16,)).to(torch.float64)
    x = torch.zeros(2, 1, 8, 8, device="meta")
    with pytest.raises(ValueError, match="data is on meta but the model on cpu"):
        to_inference_data(vae.model, vae.guide, x)


def test_the_arviz_plots_the_docs_name_draw_pyrogens_inference_data(image_idata):
    """``az.plot_ppc`` on the raw pixel draws (it refuses unsigned data), on the PPC statistics,
    ``az.plot_bpv`` and ``az.plot_khat`` all accept what pyrogen writes."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pyrogen.diagnostics import pointwise, ppc_statistics

    az = arviz()
    _, _, _, idata = image_idata
    try:
        az.plot_ppc(idata, var_names=["x"], num_pp_samples=4)
        stats = ppc_statistics(idata)
        az.plot_ppc(stats, var_names=["mean_intensity"])
        az.plot_bpv(stats, var_names=["mean_intensity"])
        with warnings.catch_warnings():  # ArviZ's own notice about arrays, as in the report
            warnings.simplefilter("ignore", FutureWarning)
            az.plot_khat(pointwise(idata)["khat"].to_numpy())
    finally:
        plt.close("all")
