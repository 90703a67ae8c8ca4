import math

import pyro.poutine as poutine
import pytest
import torch
import torch.nn.functional as F
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from pyro.optim import Adam

from pyrogen.data import Batch
from pyrogen.data.quadrants import HIDDEN_VALUE, condition_on_quadrants, visible_mask
from pyrogen.infer import elbo, log_likelihood
from pyrogen.models import CVAE

SHAPE = (1, 8, 8)


def _data(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.bernoulli(torch.rand(n, *SHAPE, generator=g))
    y = torch.randint(0, 10, (n,), generator=g)
    return x, y


def test_quadrant_masks_follow_pyros_layout():
    one, two, three = (visible_mask((1, 4, 4), k)[0] for k in (1, 2, 3))
    assert one.tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]]
    assert two.tolist() == [[1, 1, 0, 0]] * 4
    assert three.tolist() == [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]]
    x = torch.rand(2, 1, 4, 4)
    y = condition_on_quadrants(x, visible_mask((1, 4, 4), 2))
    assert torch.equal(y[..., :2], x[..., :2]) and (y[..., 2:] == HIDDEN_VALUE).all()
    with pytest.raises(ValueError, match="1, 2 or 3"):
        visible_mask((1, 4, 4), 4)


@pytest.mark.parametrize("condition,quadrants", [
    ("prior-network", None), ("prior-network", 2), ("encoder-decoder", None),
    ("encoder-decoder", 1), ("class-mean", None)], ids=lambda v: str(v))
def test_users_own_svi_script_trains_every_variant(condition, quadrants):
    cvae = CVAE(SHAPE, condition=condition, quadrants=quadrants, latent_dim=3, hidden=(32,))
    x, labels = _data(64)
    batch = Batch(x, labels, torch.arange(64))
    args = cvae.inputs(batch)
    svi = SVI(cvae.model, cvae.guide, Adam({"lr": 1e-2}), Trace_ELBO())
    losses = [svi.step(*args) for _ in range(60)]
    assert sum(losses[-10:]) < sum(losses[:10])
    # every piece a user reaches for has the right shape
    if quadrants is None:
        assert cvae.sample(5, y=7).shape == (5, *SHAPE)
        assert cvae.reconstruct(x[:4], labels[:4]).shape == (4, *SHAPE)
    else:
        completed = cvae.complete(x[:4], num_samples=2)
        assert completed.shape == (2, 4, *SHAPE)
        visible = visible_mask(SHAPE, quadrants)
        assert torch.equal(completed[:, :, visible], x[:4][:, visible].expand(2, -1, -1))


def test_class_mean_prior_kl_is_the_closed_form():
    cvae = CVAE(SHAPE, condition="class-mean", latent_dim=4, hidden=(16,))
    x, y = _data(10)
    with torch.no_grad():
        cvae.model.class_means.normal_()
        last = cvae.model.decoder.net.layers[-1]
        last.weight.zero_()  # p(x|z) no longer depends on z: the loss is deterministic
    loc, scale = cvae.encode(x, y)
    mu = cvae.model.class_means[y].detach()
    kl = 0.5 * (scale**2 + (loc - mu) ** 2 - 1 - 2 * scale.log()).sum()
    recon = F.binary_cross_entropy_with_logits(last.bias.detach().expand(10, 64),
                                               x.reshape(10, -1), reduction="sum")
    loss = TraceMeanField_ELBO().loss(cvae.model, cvae.guide, x, y)
    assert loss == pytest.approx((recon + kl).item(), rel=1e-5)


def test_label_cvae_with_linear_gaussian_decoder_has_the_exact_conditional_likelihood():
    # encoder-decoder with no hidden layer and a Gaussian likelihood is probabilistic PCA
    # with a class-dependent mean: p(x | y) = N(b + V onehot(y), W W^T + sigma^2 I). With
    # orthogonal columns of W the posterior is diagonal, so the guide can be exact: then
    # every importance weight equals p(x | y), and the ELBO is tight.
    torch.set_default_dtype(torch.float64)
    try:
        d, q, k, sigma = 6, 2, 3, 0.7
        cvae = CVAE((1, 2, 3), condition="encoder-decoder", latent_dim=q, hidden=(),
                    likelihood="gaussian", num_classes=k)
        W = torch.linalg.qr(torch.randn(d, q))[0] * torch.tensor([2.0, 0.5])
        V, b = torch.randn(d, k), torch.randn(d)
        dec = cvae.model.decoder.net.layers[-1]
        enc = cvae.guide.encoder.net.layers[-1]
        m = (W**2).sum(0) + sigma**2  # the diagonal of M = W^T W + sigma^2 I
        A = W.T / m[:, None]  # posterior mean = A (x - b - V onehot(y))
        with torch.no_grad():
            dec.weight.copy_(torch.cat([W, V], 1))
            dec.bias.copy_(b)
            cvae.model.likelihood.scale = torch.tensor(sigma)
            enc.weight.zero_()
            enc.weight[:q].copy_(torch.cat([A, -A @ V], 1))
            enc.bias.zero_()
            enc.bias[:q].copy_(-A @ b)
            scale = (sigma**2 / m).sqrt() - cvae.guide.encoder.min_scale
            enc.bias[q:].copy_(scale.expm1().log())  # softplus^{-1}
        y = torch.tensor([0, 1, 2, 2, 1])
        x = (torch.randn(5, q) @ W.T + V[:, y].T + b + sigma * torch.randn(5, d)).reshape(5, 1, 2, 3)
        exact = torch.distributions.MultivariateNormal(
            b + V[:, y].T, W @ W.T + sigma**2 * torch.eye(d)).log_prob(x.reshape(5, d))
        assert torch.allclose(log_likelihood(cvae.model, cvae.guide, (x, y), num_samples=3),
                              exact, atol=1e-8)
        assert torch.allclose(elbo(cvae.model, cvae.guide, (x, y)), exact, atol=1e-8)
        # a label that is not the point's own gives a lower conditional likelihood on average
        other = log_likelihood(cvae.model, cvae.guide, (x, (y + 1) % k), num_samples=2000)
        assert other.mean() < exact.mean()
    finally:
        torch.set_default_dtype(torch.float32)


def test_baseline_loss_is_the_masked_cross_entropy():
    cvae = CVAE(SHAPE, condition="prior-network", quadrants=1, latent_dim=3, hidden=(16,))
    x, _ = _data(6)
    y = cvae.condition_of(x, None)
    model, guide = cvae.baseline_pair()
    logits = model.predict(y.reshape(6, -1))
    hidden = ~visible_mask(SHAPE, 1)
    expected = (F.binary_cross_entropy_with_logits(logits, x, reduction="none") * hidden).sum()
    assert Trace_ELBO().loss(model, guide, x, y) == pytest.approx(expected.item(), rel=1e-5)
    # the CVAE's likelihood scores the hidden pixels only: flipping visible pixels of x
    # (with the condition y and z fixed) leaves log p(x | z, y) unchanged
    flipped = torch.where(visible_mask(SHAPE, 1), 1 - x, x)
    z = torch.randn(6, 3)
    log_p = [poutine.trace(poutine.condition(cvae.model, data={"z": z})).get_trace(t, y)
             .nodes["x"]["fn"].log_prob(t) for t in (x, flipped, 1 - x)]
    assert torch.allclose(log_p[0], log_p[1])
    assert not torch.allclose(log_p[0], log_p[2])


def test_prior_network_does_not_train_the_baseline():
    cvae = CVAE(SHAPE, condition="prior-network", latent_dim=3, hidden=(16,))
    x, y = _data(32)
    before = [p.detach().clone() for p in cvae.model.baseline.parameters()]
    svi = SVI(cvae.model, cvae.guide, Adam({"lr": 1e-2}), Trace_ELBO())
    for _ in range(5):
        svi.step(x, y)
    for p, q in zip(cvae.model.baseline.parameters(), before):
        assert torch.equal(p, q)


@pytest.mark.parametrize("bad,match", [
    (dict(condition="nope"), "condition must be one of"),
    (dict(condition="class-mean", quadrants=2), "cannot condition on quadrants"),
    (dict(quadrants=5), "1, 2 or 3"),
    (dict(num_classes=None), "num_classes >= 2"),
    (dict(arch="conv"), "MLPs"),
    (dict(latent_dim=0), "latent_dim"),
], ids=["condition", "class-mean-quadrants", "quadrants", "classes", "arch", "latent"])
def test_bad_options_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        CVAE(SHAPE, **bad)


def test_bad_inputs_get_clear_errors():
    cvae = CVAE(SHAPE, latent_dim=3, hidden=(16,))
    x, y = _data(4)
    with pytest.raises(ValueError, match="needs the condition y"):
        cvae.model(x)
    with pytest.raises(ValueError, match="integer class labels"):
        cvae.model(x, y.float())
    with pytest.raises(ValueError, match="x has 4 points but y has 3"):
        cvae.model(x, y[:3])
    with pytest.raises(ValueError, match="labels must lie in"):
        cvae.sample(2, y=10)
    with pytest.raises(ValueError, match="data have none"):
        cvae.inputs(Batch(x, None, torch.arange(4)))
    with pytest.raises(ValueError, match="complete"):
        cvae.complete(x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("condition,quadrants", [("prior-network", 2), ("class-mean", None)])
def test_every_tensor_follows_the_device(condition, quadrants):
    cvae = CVAE(SHAPE, condition=condition, quadrants=quadrants, latent_dim=3, hidden=(16,)).cuda()
    x, y = (t.cuda() for t in _data(8))
    args = cvae.inputs(Batch(x, y, torch.arange(8, device="cuda")))
    assert math.isfinite(Trace_ELBO().loss(cvae.model, cvae.guide, *args))
    out = cvae.complete(x) if quadrants else cvae.sample(4, y=3)
    assert out.device.type == "cuda"
    assert log_likelihood(cvae.model, cvae.guide, args, num_samples=4).shape == (8,)
