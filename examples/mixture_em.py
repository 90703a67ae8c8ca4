"""
EM for mixtures as Pyro
=======================

EM for mixtures as Pyro: the guide *is* the exact posterior, so EM's M-step is an SVI step.

Fits a Bernoulli mixture to binarised digits three ways from the same start:
exact EM (closed-form M-steps), generalised EM (SVI steps of the exact expected
complete-data log-likelihood after each E-step) and a Gaussian mixture checked against
scikit-learn's ``GaussianMixture`` from the same initial parameters.

    python examples/mixture_em.py --out runs/mixture-example
"""

from __future__ import annotations

import argparse
import copy
import warnings
from pathlib import Path

import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from pyrogen.data import load_dataset
from pyrogen.infer import exact_em, generalised_em, log_likelihood
from pyrogen.models import Mixture
from pyrogen.viz import save_image_grid


def main(args: argparse.Namespace) -> dict:
    limit = 300 if args.smoke else None
    iters = 5 if args.smoke else args.iters
    data = load_dataset("digits", binarize="static", limit=limit).to(args.device)
    x = data.train.images
    args.out.mkdir(parents=True, exist_ok=True)

    start = Mixture(data.shape, num_components=10, component="bernoulli").to(args.device)
    start.init_from_data(x, seed=0)
    exact, general = start, copy.deepcopy(start)
    exact_history = exact_em(exact, x, num_iters=iters, tol=0)
    general_history = generalised_em(general, x, num_iters=iters, steps_per_iter=5, lr=0.05)
    save_image_grid(exact.component_means(), args.out / "bernoulli_components.png", nrow=10)
    # the exact posterior as guide: the importance-sampled estimate is exact with one sample
    test_ll = log_likelihood(exact.model, exact.guide, data.test.images, num_samples=1)

    grey = load_dataset("digits", limit=limit).to(args.device)
    flat = grey.train.images.flatten(1).double()
    gmm = Mixture((flat.shape[1],), num_components=5, component="gaussian", covariance="diag",
                  reg_covar=1e-3).to(args.device).double()
    gmm.init_from_data(flat, seed=0)
    sk = GaussianMixture(5, covariance_type="diag", reg_covar=1e-3, max_iter=iters, tol=0,
                         weights_init=gmm.model.params()["log_weights"].exp().detach().cpu().numpy(),
                         means_init=gmm.model.loc.detach().cpu().numpy(),
                         precisions_init=(1 / gmm.model.covariances()).detach().cpu().numpy())
    with warnings.catch_warnings():  # a fixed number of iterations, as ours: not a failure
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk.fit(flat.cpu().numpy())
    ours = exact_em(gmm, flat, num_iters=iters, tol=0)
    result = {
        "exact_em_train_ll": exact_history[-1], "generalised_em_train_ll": general_history[-1],
        "never_decreased": all(b >= a - 1e-6 for a, b in zip(exact_history, exact_history[1:])),
        "test_nll": float(-test_ll.mean()),
        "gaussian_mixture_ll_pyrogen": ours[-1], "gaussian_mixture_ll_sklearn": float(sk.score(flat.cpu().numpy())),
    }
    print(result)
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=(__doc__ or "\n\n").split("\n\n")[1])
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--out", type=Path, default=Path("runs/mixture-example"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--smoke", action="store_true", help="a few seconds on a slice of the data")
    main(p.parse_args())
