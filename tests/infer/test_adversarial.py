"""The adversarial losses: closed forms, hand computations, and which player each step moves."""

import dataclasses
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI
from pyro.optim import Adam
from torch import nn

from pyrogen.data.split import Split
from pyrogen.infer import Trace_AAE, Trace_ALI, Trace_GAN
from pyrogen.models import AAE, ALI, GAN, Discriminator, GeneratorModel
from pyrogen.models.ali import SLEEP_WEIGHT
from pyrogen.models.cvae import EmptyGuide
from pyrogen.train import TrainConfig, Trainer


class LogRatio(nn.Module):
    """The optimal GAN discriminator's logit for data N(0, 1) against a generator N(mu, s^2)."""

    def __init__(self, mu: float, s: float) -> None:
        super().__init__()
        self.data = torch.distributions.Normal(0.0, 1.0)
        self.fake = torch.distributions.Normal(mu, s)
        self.unused = nn.Parameter(torch.zeros(()))  # a parameter, so SVI has something to see

    def forward(self, x):
        x = x.squeeze(-1)
        return self.data.log_prob(x) - self.fake.log_prob(x) + 0 * self.unused


class Affine(nn.Module):
    """G(z) = logit(mu + s z) so that GeneratorModel's sigmoid gives back mu + s z."""

    def __init__(self, mu: float, s: float) -> None:
        super().__init__()
        self.mu, self.s = mu, s
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, z):
        return torch.logit(((self.mu + self.s * z) * self.w).clamp(1e-6, 1 - 1e-6))


def _jsd(mu: float, s: float) -> float:
    grid = torch.linspace(-12, 12, 200001, dtype=torch.float64)
    p = torch.distributions.Normal(0.0, 1.0).log_prob(grid).exp()
    q = torch.distributions.Normal(mu, s).log_prob(grid).exp()
    m = (p + q) / 2
    kl = lambda a: torch.where(a > 0, a * (a / m).log(), torch.zeros_like(a))  # noqa: E731
    dx = grid[1] - grid[0]
    return float(0.5 * (kl(p).sum() + kl(q).sum()) * dx)


def _gan_with(net_d: nn.Module, mu: float, s: float) -> tuple[GeneratorModel, Discriminator]:
    # the data live in (0, 1) after GeneratorModel's sigmoid: shift everything into it
    model = GeneratorModel(Affine(mu, s), 1, (1,))
    return model, Discriminator(net_d)


def test_optimal_discriminator_loss_is_two_log_two_for_equal_distributions():
    model, disc = _gan_with(nn.Identity(), 0.5, 0.1)
    disc = Discriminator(LogRatio(0.5, 0.1))
    disc.discriminator.data = torch.distributions.Normal(0.5, 0.1)  # the data equal the generator
    x = 0.5 + 0.1 * torch.randn(1000, 1)
    loss = Trace_GAN(disc, "discriminator").loss(model, EmptyGuide(), x)
    assert loss == pytest.approx(2 * math.log(2), abs=1e-5)


def test_optimal_discriminator_loss_is_two_log_two_minus_twice_jsd():
    mu, s = 0.6, 0.05
    torch.manual_seed(1)
    x = 0.5 + 0.1 * torch.randn(200000, 1)  # the data: N(0.5, 0.1^2)
    net = LogRatio(mu, s)
    net.data = torch.distributions.Normal(0.5, 0.1)
    model, disc = _gan_with(net, mu, s)
    loss = Trace_GAN(disc, "discriminator").loss(model, EmptyGuide(), x)
    expected = 2 * math.log(2) - 2 * _jsd((mu - 0.5) / 0.1, s / 0.1)
    assert loss == pytest.approx(expected, abs=0.01)
    assert expected < 2 * math.log(2) - 0.1  # the two distributions do differ


def _params(modules):
    return [p for m in modules for p in m.parameters()]


def _models():
    return {
        "gan": GAN((1, 8, 8), latent_dim=3, arch="mlp", hidden=(16,), generator_loss="regularised"),
        "gan-minimax": GAN((1, 8, 8), latent_dim=3, arch="mlp", hidden=(16,), generator_loss="minimax"),
        "gan-conv": GAN((1, 28, 28), latent_dim=3, channels=(4, 8)),
        "aae": AAE((1, 8, 8), latent_dim=2, hidden=(16,), prior="mixture", reg_weight=1.0),
        "aae-gaussian": AAE((1, 8, 8), latent_dim=2, hidden=(16,), encoder="gaussian"),
        "ali": ALI((1, 8, 8), latent_dim=2, arch="mlp", hidden=(16,), loss="swapped"),
        "ali-complete": ALI((1, 8, 8), latent_dim=2, arch="mlp", hidden=(16,), generator="gaussian",
                            loss="complete"),
        "ali-sleep": ALI((1, 8, 8), latent_dim=2, arch="mlp", hidden=(16,), loss="paper-sleep",
                         sleep_weight=0.5),
    }


@pytest.mark.parametrize("name", list(_models()))
def test_each_step_moves_only_its_own_player(name):
    m = _models()[name]
    x = torch.rand(8, *m.data_shape)
    losses, players = m.losses(), m.players()
    svis = {k: SVI(m.model, m.guide, Adam({"lr": 1e-2}), loss) for k, loss in losses.items()}
    for _ in range(2):
        for k, svi in svis.items():
            before = {n: [p.detach().clone() for p in _params(mods)] for n, mods in players.items()}
            losses[k].snapshot(m.model, m.guide, x)
            svi.step(x)
            svi.step(x)
            for n, mods in players.items():
                moved = [not torch.equal(a, b) for a, b in zip(before[n], _params(mods))]
                if n == k:
                    assert any(moved), f"{k}'s step did not move {k}"
                else:
                    assert not any(moved), f"{k}'s step moved {n}"


@pytest.mark.parametrize("name", list(_models()))
def test_loss_and_grads_leave_no_gradient_on_the_other_player(name):
    m = _models()[name]
    x = torch.rand(8, *m.data_shape)
    for k, loss in m.losses().items():
        for p in m.parameters():
            p.grad = None
        loss.snapshot(m.model, m.guide, x)
        loss.loss_and_grads(m.model, m.guide, x)
        for n, mods in m.players().items():
            grads = [p.grad for p in _params(mods)]
            if n == k:
                assert any(g is not None and g.abs().sum() > 0 for g in grads)
            else:
                assert all(g is None for g in grads), f"{k}'s loss left gradients on {n}"


@pytest.mark.parametrize("name", ["gan", "aae", "ali"])
def test_loss_differentiable_loss_and_terms_agree(name):
    m = _models()[name]
    x = torch.rand(8, *m.data_shape)
    for loss in m.losses().values():
        loss.snapshot(m.model, m.guide, x)
        pyro.set_rng_seed(3)
        a = loss.loss(m.model, m.guide, x)
        pyro.set_rng_seed(3)
        b = loss.differentiable_loss(m.model, m.guide, x).item()
        assert a == pytest.approx(b, rel=1e-6)


class ConstantLogit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x, *rest):
        return self.bias.expand(x.shape[0])


def test_regulariser_is_zero_at_the_snapshot_and_has_the_expected_gradient():
    gen = nn.Linear(2, 4)
    model = GeneratorModel(gen, 2, (4,))
    disc = Discriminator(ConstantLogit())  # D = 1/2 everywhere: the adversarial term is constant
    loss = Trace_GAN(disc, "generator", generator_loss="regularised", reg_weight=5.0)
    x = torch.rand(16, 4)
    loss.snapshot(model, EmptyGuide(), x)
    value = loss.differentiable_loss(model, EmptyGuide(), x)
    assert loss.terms["g_reg"] == 0.0
    assert value.item() == pytest.approx(math.log(2))
    (grad,) = torch.autograd.grad(value, [gen.bias])
    assert torch.equal(grad, torch.zeros(4))

    z, old = loss._snapshot["z"], loss._snapshot["x"]
    with torch.no_grad():
        gen.bias += torch.tensor([0.3, -0.2, 0.1, 0.0])
    value = loss.differentiable_loss(model, EmptyGuide(), x)
    new = torch.sigmoid(gen(z))
    expected_reg = ((new - old) ** 2).mean()
    assert loss.terms["g_reg"] == pytest.approx(expected_reg.item(), rel=1e-5)
    (grad,) = torch.autograd.grad(value, [gen.bias])
    # d/db 5 * mean((s(Wz+b) - old)^2) = 5 * 2 / (B * D) * sum_n (new - old) * s'(.)
    expected = 5 * 2 / new.numel() * ((new - old) * new * (1 - new)).sum(0)
    assert torch.allclose(grad, expected, atol=1e-7)


def test_regularised_loss_needs_a_snapshot_of_the_same_size():
    m = _models()["gan"]
    loss = m.losses()["generator"]
    with pytest.raises(ValueError, match="snapshot"):
        loss.loss(m.model, m.guide, torch.rand(4, 1, 8, 8))
    loss.snapshot(m.model, m.guide, torch.rand(4, 1, 8, 8))
    with pytest.raises(ValueError, match="4 draws"):
        loss.loss(m.model, m.guide, torch.rand(5, 1, 8, 8))


def _fix_prior(model, z):
    model.prior = lambda: dist.Delta(z, event_dim=1)


def test_aae_losses_match_a_hand_computation():
    aae = AAE((1, 8, 8), latent_dim=2, hidden=(8,), recon_weight=0.7)
    x = torch.rand(6, 1, 8, 8)
    z_prior = torch.randn(6, 2)
    _fix_prior(aae.model, z_prior)
    losses = aae.losses()
    code = aae.guide.encoder(x)[0]
    d = aae.discriminator.discriminator
    sp = torch.nn.functional.softplus
    expected_d = sp(d(code)).mean() + sp(-d(z_prior)).mean()
    rec = torch.sigmoid(aae.model.generator(code))
    expected_ae = sp(-d(code)).mean() + 0.7 * ((x - rec) ** 2).sum((1, 2, 3)).mean()
    assert losses["discriminator"].loss(aae.model, aae.guide, x) == pytest.approx(expected_d.item(), rel=1e-5)
    assert losses["autoencoder"].loss(aae.model, aae.guide, x) == pytest.approx(expected_ae.item(), rel=1e-5)


@pytest.mark.parametrize("kind", ["paper", "minimax", "swapped", "paper-sleep"])
def test_ali_losses_match_a_hand_computation(kind):
    weight = {"sleep_weight": 3.0} if kind == "paper-sleep" else {}
    ali = ALI((1, 8, 8), latent_dim=2, arch="mlp", hidden=(8,), encoder="delta", loss=kind, **weight)
    x = torch.rand(6, 1, 8, 8)
    z_prior = torch.randn(6, 2)
    _fix_prior(ali.model, z_prior)
    d = ali.discriminator.discriminator
    sp = torch.nn.functional.softplus
    z_enc = ali.guide.encoder(x)[0]
    x_gen = torch.sigmoid(ali.model.generator(z_prior))
    l_enc, l_gen = d(x, z_enc), d(x_gen, z_prior)
    log_d = lambda t: -sp(-t)  # noqa: E731
    log_1md = lambda t: -sp(t)  # noqa: E731
    expected_d = -(log_d(l_enc).mean() + log_1md(l_gen).mean())
    expected_eg = {
        "paper": -log_d(l_enc).mean() - log_d(l_gen).mean(),
        "minimax": log_d(l_enc).mean() + log_1md(l_gen).mean(),
        "swapped": -log_1md(l_enc).mean() - log_d(l_gen).mean(),
        # a deterministic encoder's sleep term: half the squared error of E(G(z)) against z
        "paper-sleep": -log_d(l_enc).mean() - log_d(l_gen).mean()
        + 3.0 * 0.5 * (ali.guide.encoder(x_gen)[0] - z_prior).pow(2).sum(-1).mean(),
    }[kind]
    losses = ali.losses()
    assert losses["discriminator"].loss(ali.model, ali.guide, x) == pytest.approx(expected_d.item(), rel=1e-5)
    assert losses["encoder-generator"].loss(ali.model, ali.guide, x) == pytest.approx(expected_eg.item(), rel=1e-5)


def test_ali_complete_loss_adds_the_two_dropped_terms():
    ali = ALI((1, 8, 8), latent_dim=2, arch="mlp", hidden=(8,), generator="gaussian", loss="complete")
    x = torch.rand(6, 1, 8, 8)
    loss = ali.losses()["encoder-generator"]
    loss.snapshot(ali.model, ali.guide, x)
    loss.loss(ali.model, ali.guide, x)
    assert loss.terms["eg_kl"] == 0.0 and loss.terms["eg_ratio"] == 0.0  # G == G_old, E == E_old
    z, old_loc, old_scale = (loss._snapshot[k] for k in ("z", "x_loc", "x_scale"))
    with torch.no_grad():
        for p in ali.parameters():
            p.add_(0.05 * torch.randn_like(p))
    gen = pyro.poutine.trace(pyro.poutine.condition(pyro.poutine.uncondition(ali.model), data={"z": z})).get_trace(x)
    kl, ratio = loss._dropped_terms(gen, ali.guide, loss._snapshot)
    loc = torch.sigmoid(ali.model.generator(z))
    scale = ali.model.log_scale.exp()
    expected_kl = torch.distributions.kl_divergence(
        torch.distributions.Normal(loc, scale), torch.distributions.Normal(old_loc, old_scale)).sum((1, 2, 3)).mean()
    x_gen = gen.nodes["x"]["value"]
    new = torch.distributions.Normal(*ali.guide.encoder(x_gen)).log_prob(z).sum(-1)
    old = torch.distributions.Normal(*loss._old_encoder(x_gen)).log_prob(z).sum(-1)
    assert kl.item() == pytest.approx(expected_kl.item(), rel=1e-5)
    assert ratio.item() == pytest.approx((old - new).mean().item(), rel=1e-5, abs=1e-6)
    assert kl.item() > 0


def test_paper_sleep_is_the_complete_loss_to_first_order():
    """At the snapshot (old weights = current) the complete loss's gradient, for the encoder
    and the generator alike, is the paper's loss plus the sleep term -log p(z | G(z)) with
    G(z) held fixed: the KL term and the ratio term's generator gradient vanish there (in
    double precision, where the vanishing terms leave no rounding behind)."""
    torch.set_default_dtype(torch.float64)
    try:
        _check_paper_sleep_gradient()
    finally:
        torch.set_default_dtype(torch.float32)


def _check_paper_sleep_gradient():
    pyro.set_rng_seed(3)
    ali = ALI((1, 8, 8), latent_dim=3, arch="mlp", hidden=(8,), generator="gaussian", loss="complete")
    with torch.no_grad():  # a trained-looking encoder: scales away from their initial values
        for p in ali.guide.parameters():
            p.add_(0.3 * torch.randn_like(p))
    _fix_prior(ali.model, torch.randn(5, 3))
    x = torch.rand(5, 1, 8, 8)
    params = _params([ali.model, ali.guide])
    assert all(p.dtype == torch.float64 for p in params)
    complete = ali.losses()["encoder-generator"]
    complete.snapshot(ali.model, ali.guide, x)
    sleep = Trace_ALI(ali.discriminator, "encoder-generator", loss="paper-sleep", sleep_weight=1.0)
    paper = Trace_ALI(ali.discriminator, "encoder-generator", loss="paper")
    grads = {}
    for name, loss in (("complete", complete), ("sleep", sleep), ("paper", paper)):
        torch.manual_seed(11)  # the same encoder and observation noise for each loss
        value = loss.differentiable_loss(ali.model, ali.guide, x)
        grads[name] = torch.cat([g.flatten() for g in torch.autograd.grad(value, params)])
    assert torch.allclose(grads["complete"], grads["sleep"], rtol=1e-9, atol=1e-12)
    assert not torch.allclose(grads["complete"], grads["paper"], rtol=1e-2, atol=1e-4)
    assert sleep.terms["eg_sleep"] > 0


def test_paper_sleep_keeps_the_codes_in_the_prior_where_the_paper_loss_pushes_them_out():
    """The toy of benchmarks/ali_toy.py (8 Gaussians on a ring), two epochs: the paper's loss
    sends the codes far outside N(0, I); with the sleep term they stay in it."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "ali_toy", Path(__file__).parents[2] / "benchmarks" / "ali_toy.py")
    toy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toy)
    data = toy.toy_data()
    codes = {}
    for loss in ("paper", "paper-sleep"):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        weight = {"sleep_weight": 1.0} if loss == "paper-sleep" else {}
        ali = ALI(data.shape, latent_dim=2, arch="mlp", hidden=(32, 32), batch_norm=False, loss=loss,
                  **weight)
        config = TrainConfig(model="ali", epochs=2, batch_size=100, lr=1e-3, betas=[0.5, 0.999],
                             device="cpu")
        data_small = dataclasses.replace(data, train=Split(data.train.images[:6000], data.train.labels[:6000]))
        Trainer(ali, data_small, config, None, progress=False).fit()
        codes[loss] = toy.code_figures(ali.eval(), data)
    assert codes["paper"]["mean_abs_code"] > 3.0
    assert codes["paper-sleep"]["mean_abs_code"] < 2.0
    assert codes["paper-sleep"]["inversion_mse"] < 0.2 * codes["paper"]["inversion_mse"]


def test_paper_sleep_weight_defaults_to_the_measured_one():
    ali = ALI((1, 8, 8), arch="mlp", loss="paper-sleep")
    assert ali.config["sleep_weight"] is None
    assert ali.losses()["encoder-generator"].sleep_weight == SLEEP_WEIGHT == 10.0
    assert ALI((1, 8, 8), arch="mlp", loss="paper-sleep", sleep_weight=1).losses()[
        "encoder-generator"].sleep_weight == 1.0
    # the loss itself has the same default, and no weight for a loss without the term
    d = Discriminator(ConstantLogit())
    assert Trace_ALI(d, "encoder-generator", loss="paper-sleep").sleep_weight == SLEEP_WEIGHT
    assert Trace_ALI(d, "encoder-generator", loss="swapped").sleep_weight is None
    with pytest.raises(ValueError, match="sleep_weight weighs the paper-sleep"):
        Trace_ALI(d, "encoder-generator", loss="swapped", sleep_weight=3.0)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="generator_loss"):
        GAN((1, 8, 8), arch="mlp", generator_loss="wasserstein")
    with pytest.raises(ValueError, match="Gaussian encoder and a Gaussian generator"):
        ALI((1, 8, 8), arch="mlp", loss="complete")
    with pytest.raises(ValueError, match="player"):
        Trace_AAE(Discriminator(ConstantLogit()), "generator")
    with pytest.raises(ValueError, match="loss must be"):
        Trace_ALI(Discriminator(ConstantLogit()), "discriminator", loss="wgan")
    with pytest.raises(ValueError, match="sleep_weight weighs the paper-sleep"):
        ALI((1, 8, 8), arch="mlp", loss="swapped", sleep_weight=2.0)
    with pytest.raises(ValueError, match="sleep_weight must be >= 0"):
        ALI((1, 8, 8), arch="mlp", loss="paper-sleep", sleep_weight=-1.0)


def test_fresh_draw_regulariser_compares_with_the_old_weights_on_new_z():
    gen = nn.Linear(2, 4)
    model = GeneratorModel(gen, 2, (4,))
    disc = Discriminator(ConstantLogit())
    loss = Trace_GAN(disc, "generator", generator_loss="regularised", reg_draws="fresh")
    x = torch.rand(16, 4)
    loss.snapshot(model, EmptyGuide(), x)
    assert "z" not in loss._snapshot  # only the weights: each step draws its own z
    loss.loss(model, EmptyGuide(), x)
    assert loss.terms["g_reg"] == 0.0
    old_w, old_b = gen.weight.detach().clone(), gen.bias.detach().clone()
    with torch.no_grad():
        gen.weight.mul_(1.5)
    with pyro.poutine.trace() as tr:
        loss.loss(model, EmptyGuide(), x)
    z = tr.trace.nodes["z"]["value"]
    expected = ((torch.sigmoid(gen(z)) - torch.sigmoid(z @ old_w.T + old_b)) ** 2).mean()
    assert loss.terms["g_reg"] == pytest.approx(expected.item(), rel=1e-5)
    state = loss.snapshot_state()
    assert set(state) == {"generator.weight", "generator.bias"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["gan", "gan-conv", "aae", "ali-complete"])
def test_steps_and_samples_on_cuda(name):
    from pyrogen.data import load_dataset
    from pyrogen.train import TrainConfig, Trainer

    m = _models()[name]
    if m.data_shape == (1, 8, 8):  # the trainer moves the model and the data
        config = TrainConfig(model=name.split("-")[0], epochs=1, batch_size=20, device="cuda", g_steps=2)
        Trainer(m, load_dataset("digits", limit=100), config, None, progress=False).fit()
    else:  # SVI-style calls of each loss
        m = m.cuda()
        x = torch.rand(16, *m.data_shape, device="cuda")
        for loss in m.losses().values():
            loss.snapshot(m.model, m.guide, x)
            assert loss.differentiable_loss(m.model, m.guide, x).device.type == "cuda"
    m.eval()
    assert m.sample(4).device.type == "cuda"
    assert all(p.device.type == "cuda" for p in m.parameters())


def test_instance_noise_reaches_the_discriminator_only_while_training():
    """Discriminator(input_noise=s) sees x + s * eps on its first input in training mode (real
    and generated images alike), the images themselves in eval mode; GAN and ALI pass
    instance_noise on and keep it in their config."""
    seen = []

    class Recorder(nn.Module):
        def forward(self, x, *rest):
            seen.append((x.clone(), rest))
            return x.flatten(1).sum(-1)

    d = Discriminator(Recorder(), input_noise=0.3)
    x, z = torch.rand(500, 4), torch.randn(500, 2)
    d(x, z)
    noise = seen[-1][0] - x
    assert abs(float(noise.std()) - 0.3) < 0.02 and torch.equal(seen[-1][1][0], z)
    d.eval()
    d(x, z)
    assert torch.equal(seen[-1][0], x)
    with pytest.raises(ValueError, match="input_noise must be >= 0"):
        Discriminator(Recorder(), input_noise=-0.1)
    gan = GAN((1, 8, 8), arch="mlp", hidden=(16,), instance_noise=0.2)
    ali = ALI((1, 8, 8), arch="mlp", hidden=(16,), instance_noise=0.2)
    for facade in (gan, ali):
        assert facade.discriminator.input_noise == 0.2 and facade.config["instance_noise"] == 0.2
    assert GAN((1, 8, 8), arch="mlp", hidden=(16,)).discriminator.input_noise == 0.0
