import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
import torch.nn.functional as F
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from pyro.optim import Adam
from torch import nn

from pyrogen.infer import elbo, log_likelihood
from pyrogen.models.classifier import ImageClassifier
from pyrogen.models.dfcvae import DFCVAE
from pyrogen.models.util import data_plate

SHAPE = (1, 8, 8)
LAYERS = ("relu1", "relu2", "relu3")


def small_dfcvae(feature_weight=0.5, reduction="sum", **kwargs):
    clf = ImageClassifier(SHAPE, num_classes=10, channels=(4, 8, 8), hidden=8)
    dfc = DFCVAE(SHAPE, clf, latent_dim=3, hidden=(16,), arch="mlp",
                 feature_weight=feature_weight, reduction=reduction, **kwargs)
    return clf, dfc


def feature_loss(clf, x, x_hat, weight, reduction):
    """w * sum_l loss_l per image: 1/(2 C H W) ||phi_l(x) - phi_l(x_hat)||^2 for "mean"
    (Hou et al. 2017), 1/2 ||.||^2 for "sum"."""
    fx, fy = clf.features(x, LAYERS), clf.features(x_hat, LAYERS)
    agg = "mean" if reduction == "mean" else "sum"
    per_layer = [
        0.5 * getattr(F.mse_loss(fy[l], fx[l], reduction="none").flatten(1), agg)(1)
        for l in LAYERS
    ]
    return weight * torch.stack(per_layer).sum(0)


def guide_draw(dfc, x, seed, **kwargs):
    pyro.set_rng_seed(seed)
    return poutine.trace(dfc.guide).get_trace(x, **kwargs).nodes["z"]["value"]


def test_default_reduction_is_sum():
    clf = ImageClassifier(SHAPE, num_classes=10, channels=(4, 8, 8), hidden=8)
    dfc = DFCVAE(SHAPE, clf, latent_dim=3, hidden=(16,), arch="mlp")
    assert dfc.model.reduction == "sum" and dfc.config["reduction"] == "sum"
    assert dfc.model.feature_weight == 0.5


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("weight", [0.5, 3.0], ids=["paper-0.5", "w3"])
def test_trace_elbo_is_the_feature_loss_plus_log_q_minus_log_p(weight, reduction):
    clf, dfc = small_dfcvae(feature_weight=weight, reduction=reduction)
    clf.double(), dfc.double()
    x = torch.rand(5, *SHAPE, dtype=torch.float64)
    pyro.set_rng_seed(1)
    loss = Trace_ELBO().loss(dfc.model, dfc.guide, x)
    z = guide_draw(dfc, x, seed=1)  # the same draw the loss used
    with torch.no_grad():
        x_hat = torch.sigmoid(dfc.model.decoder(z))
        loc, scale = dfc.encode(x)
        features = feature_loss(clf, x, x_hat, weight, reduction).sum()
        log_q = dist.Normal(loc, scale).log_prob(z).sum()
        log_p = dist.Normal(0.0, 1.0).log_prob(z).sum()
    assert loss == pytest.approx((features + log_q - log_p).item(), rel=1e-10)
    assert features > 0


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mean_field_elbo_is_feature_loss_plus_analytic_kl(reduction):
    clf, dfc = small_dfcvae(reduction=reduction)
    clf.double(), dfc.double()
    x = torch.rand(4, *SHAPE, dtype=torch.float64)
    with torch.no_grad():
        loc, scale = dfc.encode(x)
        kl = (0.5 * (loc**2 + scale**2 - 1) - scale.log()).sum().item()
        z = guide_draw(dfc, x, seed=2)
        x_hat = torch.sigmoid(dfc.model.decoder(z))
        features = feature_loss(clf, x, x_hat, 0.5, reduction).sum().item()
    losses = {}
    for beta in (1.0, 2.5):
        pyro.set_rng_seed(2)
        losses[beta] = TraceMeanField_ELBO().loss(dfc.model, dfc.guide, x, beta=beta)
    assert losses[1.0] == pytest.approx(features + kl, rel=1e-10)
    assert losses[2.5] - losses[1.0] == pytest.approx(1.5 * kl, rel=1e-8)
    pyro.set_rng_seed(2)
    scaled = TraceMeanField_ELBO().loss(dfc.model, dfc.guide, x, num_data=40)
    assert scaled == pytest.approx(10 * losses[1.0], rel=1e-10)


def test_trace_elbo_agrees_with_mean_field_in_expectation():
    _, dfc = small_dfcvae()
    dfc.double()
    x = torch.rand(4, *SHAPE, dtype=torch.float64)
    diffs = {}
    for particles in (1, 4000):
        kwargs = dict(num_particles=particles, vectorize_particles=True, max_plate_nesting=1)
        pyro.set_rng_seed(3)
        mc = Trace_ELBO(**kwargs).loss(dfc.model, dfc.guide, x)
        pyro.set_rng_seed(3)  # the same draws of z: only the KL term differs
        diffs[particles] = mc - TraceMeanField_ELBO(**kwargs).loss(dfc.model, dfc.guide, x)
    assert abs(diffs[1]) > 1e-3  # one draw: a Monte Carlo KL, not the analytic one
    assert abs(diffs[4000]) < 0.15  # about 4 standard errors


def test_feature_network_is_fixed_and_hidden_from_every_optimiser():
    clf, dfc = small_dfcvae()
    frozen_before = {k: v.clone() for k, v in dfc.features.state_dict().items()}
    clf_before = {k: v.clone() for k, v in clf.state_dict().items()}
    assert list(dfc.features.parameters()) == []
    module = Trace_ELBO()(dfc.model, dfc.guide)
    assert {id(p) for p in module.parameters()} == {id(p) for p in dfc.parameters()}
    assert not {id(p) for p in dfc.parameters()} & {id(p) for p in clf.parameters()}
    x = torch.rand(16, *SHAPE)
    loss = module(x)
    loss.backward()
    # the decoder's only route to the loss is through the feature network
    decoder = list(dfc.model.decoder.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in decoder)
    assert all(p.grad is None for p in clf.parameters())
    svi = SVI(dfc.model, dfc.guide, Adam({"lr": 1e-2}), Trace_ELBO())
    for _ in range(3):
        svi.step(x, num_data=100)
    stored = {id(p) for _, p in pyro.get_param_store().named_parameters()}
    assert stored == {id(p) for p in dfc.parameters()}
    for key, value in dfc.features.state_dict().items():
        assert torch.equal(value, frozen_before[key]), key
    for key, value in clf.state_dict().items():
        assert torch.equal(value, clf_before[key]), key


def test_svi_on_digits_lowers_the_loss(digits):
    x = digits.train.images[:64]
    _, dfc = small_dfcvae()
    svi = SVI(dfc.model, dfc.guide, Adam({"lr": 1e-2}), Trace_ELBO())
    losses = [svi.step(x, num_data=len(digits.train)) for _ in range(40)]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) < sum(losses[:5])


class TwoMaps(nn.Module):
    """A user feature network with batch norm, returning a list (no named layers)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.norm = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)

    def forward(self, x):
        h = F.relu(self.norm(self.conv1(x)))
        return [h, F.relu(self.conv2(h))]


def test_any_module_returning_a_list_of_features_plugs_in():
    net = TwoMaps()
    dfc = DFCVAE(SHAPE, net, latent_dim=3, hidden=(16,), arch="mlp", layers=None)
    dfc.train()
    assert not any(m.training for m in dfc.features.modules())
    stats = dfc.features.net.norm.running_mean.clone()
    x = torch.rand(6, *SHAPE)
    trace = poutine.trace(dfc.model).get_trace(x)
    assert {"x_feat_0", "x_feat_1"} <= set(trace.nodes)
    site = trace.nodes["x_feat_1"]
    assert site["is_observed"] and site["fn"].log_prob(site["value"]).shape == (6,)
    SVI(dfc.model, dfc.guide, Adam({"lr": 1e-2}), Trace_ELBO()).step(x)
    assert torch.equal(dfc.features.net.norm.running_mean, stats)  # eval mode: no update
    assert dfc.config["feature_net"] is None
    with pytest.raises(TypeError, match="feature_net must be a Classifier"):
        DFCVAE(**dfc.config)


def test_config_and_state_dict_rebuild_the_model():
    clf, dfc = small_dfcvae()
    twin = DFCVAE(**dfc.config)
    twin.load_state_dict(dfc.state_dict())
    x = torch.rand(3, *SHAPE)
    assert twin.config == dfc.config
    assert torch.equal(twin.reconstruct(x), dfc.reconstruct(x))
    for got, want in zip(twin.features(x), clf.features(x, LAYERS).values()):
        assert torch.equal(got, want)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_importance_sampled_log_likelihood_of_features(reduction):
    clf, dfc = small_dfcvae(reduction=reduction)
    x = torch.rand(5, *SHAPE)
    ll = log_likelihood(dfc.model, dfc.guide, x, num_samples=64, chunk_size=16)
    bound = elbo(dfc.model, dfc.guide, x, num_particles=64)
    assert ll.shape == bound.shape == (5,)
    assert torch.isfinite(ll).all() and torch.isfinite(bound).all()
    assert (ll >= bound - 1e-3).all()

    # with the prior as proposal every weight is exp(-w sum_l loss_l) <= 1: the estimate of
    # log of the integral of exp(-w sum_l loss_l) p(z) dz, an unnormalised density
    def prior_guide(x, **kwargs):
        with data_plate(x.shape[0], None, x.device):
            pyro.sample("z", dfc.model.prior())

    pyro.set_rng_seed(5)
    ll_prior = log_likelihood(dfc.model, prior_guide, x, num_samples=2000)
    assert (ll_prior <= 0).all()
    with torch.no_grad():
        x_hat = dfc.decode(torch.randn(2000, 1, 3)).expand(2000, 5, *SHAPE).flatten(0, 1)
        loss = feature_loss(clf, x.repeat(2000, 1, 1, 1), x_hat, 0.5, reduction).view(2000, 5)
    reference = torch.logsumexp(-loss, 0) - math.log(2000)
    assert torch.allclose(ll_prior, reference, atol=0.05)


def test_facade_shapes_and_conv_architecture():
    clf, dfc = small_dfcvae()
    x = torch.rand(5, *SHAPE)
    samples = dfc.sample(6)
    assert samples.shape == (6, *SHAPE) and 0 <= samples.min() and samples.max() <= 1
    assert dfc.reconstruct(x).shape == x.shape
    loc, scale = dfc.encode(x)
    assert loc.shape == scale.shape == (5, 3) and (scale > 0).all()
    assert dfc.decode(torch.zeros(2, 7, 3)).shape == (2, 7, *SHAPE)
    assert dfc.model(num_samples=4).shape == (4, 3) and dfc.latent_dim == 3
    generated = poutine.trace(dfc.model).get_trace(num_samples=4)
    assert not [n for n in generated.nodes if n.startswith("x_feat")]
    big = ImageClassifier((1, 28, 28), num_classes=10, channels=(4, 8, 8), hidden=8)
    conv = DFCVAE((1, 28, 28), big, latent_dim=8)
    svi = SVI(conv.model, conv.guide, Adam({"lr": 1e-3}), Trace_ELBO())
    assert math.isfinite(svi.step(torch.rand(4, 1, 28, 28)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_step_and_sample():
    _, dfc = small_dfcvae()
    dfc = dfc.cuda()
    x = torch.rand(8, *SHAPE, device="cuda")
    svi = SVI(dfc.model, dfc.guide, Adam({"lr": 1e-3}), Trace_ELBO())
    assert math.isfinite(svi.step(x, num_data=100))
    assert dfc.sample(2).device.type == "cuda"
    assert all(b.device.type == "cuda" for b in dfc.features.buffers())


def test_bad_inputs_raise():
    clf, dfc = small_dfcvae()
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 1, 8, 8\), got \(4, 64\)"):
        dfc.model(torch.zeros(4, 64))
    with pytest.raises(ValueError, match="needs either x or num_samples"):
        dfc.model()
    with pytest.raises(ValueError, match="layers must be a non-empty sequence"):
        DFCVAE(SHAPE, clf, arch="mlp", layers=("relu1", "conv5"))
    with pytest.raises(ValueError, match="feature_weight must be > 0"):
        DFCVAE(SHAPE, clf, arch="mlp", feature_weight=0.0)
    with pytest.raises(ValueError, match="reduction must be one of"):
        DFCVAE(SHAPE, clf, arch="mlp", reduction="max")
    with pytest.raises(ValueError, match=r"reads images of shape \(1, 8, 8\)"):
        DFCVAE((3, 8, 8), clf, arch="mlp")
    with pytest.raises(TypeError, match="feature_net must be"):
        DFCVAE(SHAPE, 42, arch="mlp")
    vgg_like = nn.Module()
    vgg_like.features = nn.Sequential(nn.Conv2d(1, 2, 3))  # torchvision's VGG layout
    with pytest.raises(TypeError, match="pass layers=None"):
        DFCVAE(SHAPE, vgg_like, arch="mlp")
    with pytest.raises(ValueError, match="data_shape must be"):
        DFCVAE(SHAPE, clf)  # the conv networks take 28x28 or 64x64


@pytest.mark.parametrize("pixel_weight", [0.0, 0.7])
def test_trace_elbo_adds_the_weighted_pixel_cross_entropy(pixel_weight):
    """With pixel_weight lambda the loss is w sum_l loss_l + lambda sum_d H(x_d, x_hat_d) + log q - log p,
    H the binary cross-entropy; lambda = 0 is the paper's model (no x_pixels site)."""
    clf, dfc = small_dfcvae(feature_weight=0.5, pixel_weight=pixel_weight)
    clf.double(), dfc.double()
    x = torch.rand(5, *SHAPE, dtype=torch.float64)
    pyro.set_rng_seed(3)
    loss = Trace_ELBO().loss(dfc.model, dfc.guide, x)
    z = guide_draw(dfc, x, seed=3)
    with torch.no_grad():
        x_hat = torch.sigmoid(dfc.model.decoder(z))
        loc, scale = dfc.encode(x)
        features = feature_loss(clf, x, x_hat, 0.5, "sum").sum()
        pixels = -(x * x_hat.log() + (1 - x) * (1 - x_hat).log()).sum()
        log_q = dist.Normal(loc, scale).log_prob(z).sum()
        log_p = dist.Normal(0.0, 1.0).log_prob(z).sum()
    assert loss == pytest.approx((features + pixel_weight * pixels + log_q - log_p).item(), rel=1e-9)
    sites = poutine.trace(dfc.model).get_trace(x).nodes
    assert ("x_pixels" in sites) == (pixel_weight > 0)
    assert dfc.config["pixel_weight"] == pixel_weight
    with pytest.raises(ValueError, match="pixel_weight must be >= 0"):
        small_dfcvae(pixel_weight=-1.0)
