import numpy as np
import pandas as pd
import pytest

from ppca import exact_log_likelihood, make_ppca, ppca_pair, sample_ppca
from pyrogen.diagnostics import from_netcdf
from pyrogen.diagnostics.report import REPORT_FILES, diagnose


def test_report_on_ppca_matches_the_closed_forms(tmp_path):
    W, mu, sigma = make_ppca()
    model, guide = ppca_pair(W, mu, sigma, exact_guide=True)
    x = sample_ppca(W, mu, sigma, 30)
    summary = diagnose(model, guide, x, tmp_path, num_samples=200, num_predictive=10)
    exact = exact_log_likelihood(W, mu, sigma, x).numpy()
    assert summary["log_likelihood_mean"] == pytest.approx(exact.mean(), abs=1e-9)
    assert summary["elbo_mean"] == pytest.approx(exact.mean(), abs=1e-9)
    assert summary["gap_mean"] == pytest.approx(0.0, abs=1e-9)
    assert summary["ess_mean"] == pytest.approx(200.0)
    assert summary["share_khat_above_threshold"] == 0.0
    assert summary["active_units"] == 2.0 and summary["latent_dims"] == 2.0
    # feature vectors, not images: no picture of the worst points
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(REPORT_FILES) - {"worst.png"})
    csv = pd.read_csv(tmp_path / "summary.csv")
    assert dict(zip(csv["name"], csv["value"])) == pytest.approx(summary)
    points = pd.read_csv(tmp_path / "points.csv", index_col="obs").sort_index()
    np.testing.assert_allclose(points["log_likelihood"], exact, atol=1e-9)
    back = from_netcdf(tmp_path / "inference_data.nc")
    assert back.posterior["z"].shape == (1, 200, 30, 2)


def test_report_needs_two_draws(tmp_path):
    W, mu, sigma = make_ppca()
    model, guide = ppca_pair(W, mu, sigma)
    with pytest.raises(ValueError, match="num_samples must be >= 2"):
        diagnose(model, guide, sample_ppca(W, mu, sigma, 3), tmp_path, num_samples=1)
    assert not any(tmp_path.iterdir())
