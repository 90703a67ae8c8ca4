"""Two models live in one session: each facade's modules keep their parameters in Pyro's
global store under a prefix of their own, so plain SVI trains each without clearing it."""

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyrogen.models import CVAE, GAN, VAE
from pyrogen.primitives import instance_name

X = torch.rand(20, 1, 8, 8).bernoulli()
Y = torch.randint(10, (20,))


def _moved(model, *args):
    svi = SVI(model.model, model.guide, Adam({"lr": 1e-2}), Trace_ELBO())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for _ in range(2):
        svi.step(*args)
    return sum(not torch.equal(before[n], p) for n, p in model.named_parameters()), len(before)


@pytest.mark.parametrize("second", ["vae", "cvae"])
def test_a_second_model_trains_without_clearing_the_param_store(second):
    first = VAE((1, 8, 8), latent_dim=4, hidden=(16,))
    moved, total = _moved(first, X)
    assert moved == total
    other = (VAE((1, 8, 8), latent_dim=4, hidden=(16,)) if second == "vae"
             else CVAE((1, 8, 8), num_classes=10, latent_dim=3, hidden=(8,)))
    args = (X,) if second == "vae" else (X, Y)
    moved, total = _moved(other, *args)
    assert moved == total  # every parameter of the second model moves
    moved, total = _moved(first, X)  # and the first still trains its own
    assert moved == total
    names = list(pyro.get_param_store().keys())
    assert len(names) == len(set(names)) == sum(
        1 for _ in first.named_parameters()) + sum(1 for _ in other.named_parameters())


def test_names_are_unique_and_weights_keep_their_names():
    assert instance_name("VAEModel").startswith("vae_model_")
    assert instance_name("VAEModel") != instance_name("VAEModel")
    a, b = GAN((1, 8, 8), latent_dim=2, arch="mlp", hidden=(8,)), GAN((1, 8, 8), latent_dim=2, arch="mlp", hidden=(8,))
    assert a.state_dict().keys() == b.state_dict().keys()  # checkpoints are unaffected
    b.load_state_dict(a.state_dict())


def test_bernoulli_likelihood_follows_pyros_validation_switch():
    """Grey values fed to a Bernoulli VAE raise under Pyro's validation (its default), and
    train silently only where a user switched validation off."""
    vae = VAE((1, 8, 8), latent_dim=3, hidden=(8,))
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), Trace_ELBO())
    grey = torch.rand(5, 1, 8, 8)
    with pyro.validation_enabled(True):
        with pytest.raises(ValueError, match="support"):
            svi.step(grey)
        assert torch.isfinite(torch.tensor(svi.step(grey.bernoulli())))
    with pyro.validation_enabled(False):
        assert torch.isfinite(torch.tensor(svi.step(grey)))
