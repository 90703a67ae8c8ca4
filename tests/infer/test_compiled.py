import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyrogen.infer import CompiledLoss, Trace_IWAE
from pyrogen.models import VAE


@pytest.mark.parametrize(
    "elbo, kwargs",
    [(Trace_ELBO, {"num_data": 100, "beta": 0.5}),
     (lambda: Trace_IWAE(num_particles=3), {"num_data": 100})],
    ids=["Trace_ELBO", "Trace_IWAE"],
)
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_compiled_loss_equals_pyro_loss_and_gradients(elbo, kwargs, likelihood):
    vae = VAE((1, 8, 8), latent_dim=3, hidden=(16,), likelihood=likelihood)
    x = torch.rand(10, 1, 8, 8)
    if likelihood == "bernoulli":
        x = torch.bernoulli(x)
    compiled = CompiledLoss(elbo(), vae.model, vae.guide)
    compiled(x, **kwargs)  # compile (draws random numbers)
    for _ in range(2):  # the second call runs the compiled graph again: fresh draws, same values
        seed = torch.randint(1000, ()).item()
        pyro.set_rng_seed(seed)
        expected = elbo().differentiable_loss(vae.model, vae.guide, x, **kwargs)
        grads = torch.autograd.grad(expected, list(vae.parameters()))
        pyro.set_rng_seed(seed)
        got = compiled(x, **kwargs)
        got.backward()
        assert got.item() == pytest.approx(expected.item(), rel=1e-5)
        for g, p in zip(grads, vae.parameters()):
            assert torch.allclose(g, p.grad, rtol=1e-4, atol=1e-5)
            p.grad = None


def test_compiled_mean_field_elbo_has_the_same_expectation():
    # under the tracer torch draws normals by another route, so the same seed
    # gives other draws (Pyro's JitTraceMeanField_ELBO too): compare means
    vae = VAE((1, 8, 8), latent_dim=3, hidden=(16,))
    x = torch.bernoulli(torch.rand(10, 1, 8, 8))
    compiled = CompiledLoss(TraceMeanField_ELBO(), vae.model, vae.guide)
    with torch.no_grad():
        got = torch.stack([compiled(x, beta=0.5) for _ in range(400)])
        expected = torch.stack([TraceMeanField_ELBO().differentiable_loss(
            vae.model, vae.guide, x, beta=0.5) for _ in range(400)])
    stderr = (got.var() / 400 + expected.var() / 400).sqrt()
    assert (got.mean() - expected.mean()).abs() < 4 * stderr


def test_keyword_arguments_get_their_own_graph():
    vae = VAE((1, 8, 8), latent_dim=3, hidden=(16,))
    x = torch.bernoulli(torch.rand(10, 1, 8, 8))
    compiled = CompiledLoss(TraceMeanField_ELBO(), vae.model, vae.guide)
    pyro.set_rng_seed(0)
    small = compiled(x, beta=0.1).item()
    pyro.set_rng_seed(0)
    large = compiled(x, beta=10.0).item()
    assert len(compiled._compiled) == 2 and large > small
    assert {id(p) for p in compiled.parameters()} == {id(p) for p in vae.parameters()}


def test_another_batch_shape_gets_its_own_graph():
    # a graph is traced for the shapes it saw; a batch of another size (a batch schedule)
    # is traced anew instead of trusting the tracer to have kept every size symbolic
    vae = VAE((1, 8, 8), latent_dim=3, hidden=(16,))
    x = torch.bernoulli(torch.rand(20, 1, 8, 8))
    compiled = CompiledLoss(TraceMeanField_ELBO(), vae.model, vae.guide)
    elbo = TraceMeanField_ELBO()
    compiled(x, num_data=100), compiled(x[:10], num_data=100)  # tracing draws random numbers
    for batch in (x, x[:10]):
        pyro.set_rng_seed(0)
        ours = compiled(batch, num_data=100)
        pyro.set_rng_seed(0)
        pyros = elbo.differentiable_loss(vae.model, vae.guide, batch, num_data=100)
        assert torch.allclose(ours, pyros, rtol=1e-5)
    assert len(compiled._compiled) == 2


def test_a_second_model_compiles_beside_the_first():
    """Each model's parameters have names of their own in the param store (no clearing)."""
    first = VAE((1, 8, 8), latent_dim=3, hidden=(16,))
    x = torch.bernoulli(torch.rand(4, 1, 8, 8))
    Trace_ELBO().loss(first.model, first.guide, x)  # puts first's parameters in the store
    second = VAE((1, 8, 8), latent_dim=3, hidden=(16,))
    value = CompiledLoss(Trace_ELBO(), second.model, second.guide)(x)
    grads = torch.autograd.grad(value, list(second.parameters()))
    assert all(g is not None for g in grads)


@pytest.mark.parametrize("elbo", [Trace_ELBO, TraceMeanField_ELBO], ids=["Trace_ELBO", "TraceMeanField_ELBO"])
def test_compiled_loss_value_follows_the_parameters_after_compilation(elbo):
    # Pyro's ELBOs take `.item()` of the surrogate loss; a tracer freezes it at
    # the compile-time parameters, which once made the compiled mean-field value
    # 2 L(theta) - L(theta_0) after training had moved theta.
    vae = VAE((1, 8, 8), latent_dim=3, hidden=(16,))
    x = torch.bernoulli(torch.rand(50, 1, 8, 8))
    compiled = CompiledLoss(elbo(), vae.model, vae.guide)
    compiled(x)
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(0.5 * torch.randn_like(p))
    got = torch.stack([compiled(x).detach() for _ in range(400)]).mean()
    with pyro.validation_enabled(False):
        expected = sum(elbo().loss(vae.model, vae.guide, x) for _ in range(400)) / 400
    assert got.item() == pytest.approx(expected, rel=0.01)


def test_a_guide_without_rsample_runs_eagerly_and_says_why():
    """A score-function site cannot be recorded: the loss is Pyro's own, with one warning."""
    import pyro.distributions as dist
    from pyro.nn import PyroModule, PyroParam

    class Coin(PyroModule):
        def __init__(self):
            super().__init__()
            self.p = PyroParam(torch.tensor(0.3), constraint=torch.distributions.constraints.unit_interval)

        def forward(self, x):
            z = pyro.sample("z", dist.Bernoulli(self.p))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    class CoinGuide(PyroModule):
        def __init__(self):
            super().__init__()
            self.q = PyroParam(torch.tensor(0.6), constraint=torch.distributions.constraints.unit_interval)

        def forward(self, x):
            pyro.sample("z", dist.Bernoulli(self.q))

    pyro.clear_param_store()
    model, guide = Coin(), CoinGuide()
    compiled = CompiledLoss(Trace_ELBO(), model, guide)
    x = torch.tensor(0.7)
    with pytest.warns(RuntimeWarning, match="runs eagerly.*'z' has no rsample"):
        compiled(x)
    pyro.set_rng_seed(3)
    got = compiled(x)
    pyro.set_rng_seed(3)
    assert got.item() == pytest.approx(Trace_ELBO().differentiable_loss(model, guide, x).item())


def test_the_doubly_reparameterised_iwae_is_not_recorded_and_keeps_its_gradient():
    """torch.export drops tensor hooks, which would leave DReG's guide gradient the plain
    reparameterised one without a word: the loss says it is not exportable, and CompiledLoss
    runs Pyro's eager loss, with one warning, giving Trace_IWAE's own gradients."""
    pyro.clear_param_store()
    vae = VAE((1, 4, 4), latent_dim=3, hidden=(8,))
    x = torch.bernoulli(torch.rand(6, 1, 4, 4))
    iwae = Trace_IWAE(num_particles=4, gradient="dreg")
    compiled = CompiledLoss(iwae, vae.model, vae.guide)
    with pytest.warns(RuntimeWarning, match="runs eagerly.*not exportable"):
        compiled(x)
    params = list(vae.parameters())
    pyro.set_rng_seed(4)
    got = torch.autograd.grad(compiled(x), params)
    pyro.set_rng_seed(4)
    want = torch.autograd.grad(iwae.differentiable_loss(vae.model, vae.guide, x), params)
    pyro.set_rng_seed(4)
    plain = torch.autograd.grad(Trace_IWAE(num_particles=4).differentiable_loss(vae.model, vae.guide, x),
                                params)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert not all(torch.allclose(a, b) for a, b in zip(got, plain))


def test_the_recorded_graph_shares_parameters_and_buffers():
    """An optimiser's in-place updates and batch norm's running statistics act on the tensors
    the graph uses."""
    import pyro.distributions as dist
    from pyro.nn import PyroModule

    class Model(PyroModule):
        def forward(self, x):
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(1))
                pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)

    class Guide(PyroModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(1, 4), torch.nn.BatchNorm1d(4),
                                           torch.nn.Linear(4, 4))

        def forward(self, x):
            loc, log_scale = self.net(x).chunk(2, -1)
            with pyro.plate("data", x.shape[0]):
                pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))

    pyro.clear_param_store()
    model, guide = Model(), Guide()
    x = torch.randn(16, 1)
    compiled = CompiledLoss(Trace_ELBO(), model, guide)
    compiled(x)
    running = guide.net[1].running_mean.clone()
    compiled(x).backward()
    assert not torch.equal(running, guide.net[1].running_mean)  # the graph updated the buffer
    assert guide.net[0].weight.grad is not None
    with torch.no_grad():
        for p in guide.parameters():
            p.mul_(0.5)  # in place, as an optimiser's step
    pyro.set_rng_seed(0)
    got = compiled(x).item()
    pyro.set_rng_seed(0)
    assert got == pytest.approx(Trace_ELBO().differentiable_loss(model, guide, x).item(), rel=1e-5)


@pytest.mark.slow
def test_the_inductor_backend_equals_pyro_loss_and_gradients():
    vae = VAE((1, 8, 8), latent_dim=3, hidden=(16,))
    x = torch.bernoulli(torch.rand(10, 1, 8, 8))
    compiled = CompiledLoss(Trace_ELBO(), vae.model, vae.guide, backend="inductor")
    compiled(x, num_data=100)  # records and compiles
    expected = Trace_ELBO().differentiable_loss
    got = torch.stack([compiled(x, num_data=100).detach() for _ in range(300)]).mean()
    want = torch.stack([expected(vae.model, vae.guide, x, num_data=100).detach() for _ in range(300)]).mean()
    assert got.item() == pytest.approx(want.item(), rel=0.02)


def test_an_unknown_backend_is_refused():
    vae = VAE((1, 8, 8), latent_dim=3, hidden=(16,))
    with pytest.raises(ValueError, match="backend must be one of"):
        CompiledLoss(Trace_ELBO(), vae.model, vae.guide, backend="jit")


def test_eval_mode_gets_its_own_graph():
    vae = VAE((1, 8, 8), latent_dim=3, hidden=(16,))
    x = torch.bernoulli(torch.rand(10, 1, 8, 8))
    compiled = CompiledLoss(Trace_ELBO(), vae.model, vae.guide)
    compiled(x)
    vae.model.eval(), vae.guide.eval()
    compiled(x)
    assert len(compiled._compiled) == 2
