r"""
Annealed importance sampling (AIS) of :math:`\log p(x)` for a Pyro model with local latents,
with Hamiltonian Monte Carlo transitions, and bidirectional Monte Carlo (BDMC) bounds.

AIS (Neal, 2001) moves chains from the prior :math:`p(z)` to the posterior
:math:`p(z \mid x)` through the geometric path

.. math::
    f_t(z) = p(z)\, p(x \mid z)^{\beta_t}, \qquad 0 = \beta_0 < \beta_1 < \dots < \beta_T = 1,

accumulating, for each chain, the log weight

.. math::
    \log w = \sum_{t=1}^{T} (\beta_t - \beta_{t-1}) \log p(x \mid z_{t-1}),

where :math:`z_0 \sim p(z)` and :math:`z_t` follows from :math:`z_{t-1}` by a Markov
transition that leaves :math:`f_t` invariant (here: HMC with ``leapfrog_steps`` leapfrog
steps, a per-data-point step size adapted towards an acceptance rate of ``target_accept``,
and a Metropolis correction). :math:`\mathbb{E}[w] = p(x)`, so
:math:`\log \frac{1}{C}\sum_c w_c` over :math:`C` chains is a stochastic lower bound on
:math:`\log p(x)` (Jensen), tight as :math:`T` grows.

Bidirectional Monte Carlo (Grosse, Ghahramani and Adams, 2015): on data simulated from the
model, :math:`(z, x)` with :math:`z \sim p(z)`, :math:`x \sim p(x \mid z)`, the simulated
:math:`z` is an exact posterior sample of :math:`p(z \mid x)`; AIS run backwards from it
(from :math:`\beta = 1` to 0) gives a stochastic *upper* bound on :math:`\log p(x)`. The gap
between the two bounds bounds the error of either: a small gap says the schedule is long
enough.

Pyro supplies the densities: the model is traced with its latent sites conditioned on the
chains' states (``poutine.condition``) inside a vectorised plate of chains, and each site's
log-density is read per chain and data point. The transitions are written here rather than
taken from ``pyro.infer.mcmc``: Pyro's HMC kernel runs one chain of one potential and adapts
one step size, while AIS needs thousands of chains (chains x data points) moved together,
each data point with its own step size, on a potential that changes at every temperature.

**References**

[1] R. M. Neal, "Annealed importance sampling", Statistics and Computing 11, 2001.

[2] R. B. Grosse, Z. Ghahramani, R. P. Adams, "Sandwiching the marginal likelihood using
bidirectional Monte Carlo", arXiv:1511.02543, 2015.

[3] Y. Wu, Y. Burda, R. Salakhutdinov, R. Grosse, "On the quantitative analysis of
decoder-based generative models", ICLR 2017.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample

#: the plate of chains (dim -2: the model's data plate is dim -1)
_CHAINS = "ais_chains"


def sigmoid_schedule(num_steps: int, rad: float = 4.0) -> torch.Tensor:
    r"""The inverse temperatures :math:`\beta_0 = 0 < \dots < \beta_T = 1` of ``num_steps``
    :math:`= T` steps, spaced by a sigmoid (denser at both ends, where the log weights change
    fastest; Grosse et al., 2015): :math:`\beta_t \propto \sigma(r (2t/T - 1))`, rescaled to
    :math:`[0, 1]`."""
    if int(num_steps) < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps}")
    s = torch.sigmoid(torch.linspace(-rad, rad, int(num_steps) + 1, dtype=torch.float64))
    return (s - s[0]) / (s[-1] - s[0])


@dataclasses.dataclass
class AISResult:
    """The result of :func:`ais`: per data point, the estimate and its standard error (over
    chains, by the delta method), the final acceptance rate and step size, and the settings."""

    #: :math:`\log \frac{1}{C} \sum_c w_c` per data point, ``(batch,)``
    log_likelihood: torch.Tensor
    #: its standard error over chains, ``(batch,)``
    stderr: torch.Tensor
    #: the HMC acceptance rate of the last temperatures, per data point
    accept_rate: torch.Tensor
    #: the adapted leapfrog step size per data point
    step_size: torch.Tensor
    num_steps: int
    num_chains: int
    leapfrog_steps: int
    #: the acceptance rate the step sizes were adapted towards
    target_accept: float
    #: ``"forward"`` (a lower bound) or ``"reverse"`` (BDMC's upper bound)
    direction: str


class _Densities:
    """The log-densities of a Pyro model per chain and data point: the prior
    :math:`\\log p(z)` and the likelihood :math:`\\log p(x \\mid z)` at a state of the latent
    sites, by conditioning and tracing the model in a plate of chains."""

    def __init__(self, model: Callable, args: tuple, kwargs: dict, num_chains: int) -> None:
        self.model, self.args, self.kwargs, self.num_chains = model, args, kwargs, num_chains
        trace = self._trace({})
        self.latents = [name for name, site in trace.nodes.items() if _sample(site) and not site["is_observed"]]
        self.observed = [name for name, site in trace.nodes.items() if _sample(site) and site["is_observed"]]
        if not self.latents:
            raise ValueError("the model has no latent sample site to anneal over")
        if not self.observed:
            raise ValueError("the model has no observed sample site: nothing gives p(x | z)")
        self.shapes = {name: trace.nodes[name]["value"].shape for name in self.latents}

    def _trace(self, values: dict[str, torch.Tensor]) -> poutine.Trace:
        model = poutine.condition(self.model, data=values) if values else self.model
        with pyro.plate(_CHAINS, self.num_chains, dim=-2):
            return poutine.trace(model).get_trace(*self.args, **self.kwargs)

    def prior_sample(self) -> dict[str, torch.Tensor]:
        """A draw of the latents from the prior, per chain and data point."""
        with torch.no_grad():
            trace = self._trace({})
        return {name: trace.nodes[name]["value"].detach() for name in self.latents}

    def simulate(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Latents and observations drawn from the model (BDMC's simulated data)."""
        with torch.no_grad(), pyro.plate(_CHAINS, self.num_chains, dim=-2):
            trace = poutine.trace(poutine.uncondition(self.model)).get_trace(*self.args, **self.kwargs)
        return ({name: trace.nodes[name]["value"].detach() for name in self.latents},
                {name: trace.nodes[name]["value"].detach() for name in self.observed})

    def __call__(self, z: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """:math:`(\\log p(z), \\log p(x \\mid z))`, each ``(chains, batch)``."""
        trace = self._trace(z)
        prior = sum(self._log_prob(trace.nodes[name]) for name in self.latents)
        likelihood = sum(self._log_prob(trace.nodes[name]) for name in self.observed)
        return prior, likelihood

    def _log_prob(self, site: dict[str, Any]) -> torch.Tensor:
        log_p = site["fn"].log_prob(site["value"])  # (chains, batch), or (batch,) if the
        return log_p.expand(self.num_chains, log_p.shape[-1])  # site ignores the chains


def _sample(site: dict[str, Any]) -> bool:
    return site["type"] == "sample" and not site_is_subsample(site)


def ais(model: Callable, *args: Any, num_steps: int = 1000, num_chains: int = 16,
        leapfrog_steps: int = 10, step_size: float = 0.05, target_accept: float = 0.65,
        schedule: torch.Tensor | None = None, reverse_from: dict[str, torch.Tensor] | None = None,
        **kwargs: Any) -> AISResult:
    r"""
    Annealed importance sampling of :math:`\log p(x_n)` for every data point of a minibatch
    (see the module docstring), batched over ``num_chains`` chains and the data points.

    The model is called as ``model(*args, **kwargs)``; its latent sites must sit in a data
    plate at dim -1 (pyrogen's models do), and its observed sites give :math:`p(x \mid z)`.

    :param int num_steps: :math:`T`, the intermediate distributions.
    :param int num_chains: :math:`C`, chains per data point.
    :param int leapfrog_steps: leapfrog steps per HMC transition.
    :param float step_size: the initial leapfrog step size (adapted per data point).
    :param float target_accept: the acceptance rate the step sizes are adapted towards.
    :param schedule: the inverse temperatures ``(T + 1,)`` from 0 to 1 (default
        :func:`sigmoid_schedule`).
    :param reverse_from: run backwards, from :math:`\beta = 1` to 0, starting from these latent
        values (exact posterior samples, ``{site: (chains, batch, ...)}``): BDMC's upper bound.
    :returns: an :class:`AISResult`.
    """
    if int(num_chains) < 1 or int(leapfrog_steps) < 1:
        raise ValueError(f"num_chains and leapfrog_steps must be positive integers, got "
                         f"{num_chains} and {leapfrog_steps}")
    if not 0 < target_accept < 1 or not step_size > 0:
        raise ValueError(f"target_accept must lie in (0, 1) and step_size be > 0, got "
                         f"{target_accept} and {step_size}")
    betas = sigmoid_schedule(num_steps) if schedule is None else torch.as_tensor(schedule, dtype=torch.float64)
    if betas.dim() != 1 or len(betas) < 2 or betas[0] != 0 or betas[-1] != 1 or (betas.diff() <= 0).any():
        raise ValueError("schedule must rise strictly from 0 to 1")
    densities = _Densities(model, args, kwargs, int(num_chains))
    reverse = reverse_from is not None
    if reverse:
        betas = betas.flip(0)
        z = {name: reverse_from[name].detach().clone() for name in densities.latents}
    else:
        z = densities.prior_sample()
    shape = next(iter(z.values())).shape[:2]  # (chains, batch)
    device = next(iter(z.values())).device
    eps = torch.full(shape[1:], float(step_size), device=device)
    log_w = torch.zeros(shape, dtype=torch.float64, device=device)
    accepted = torch.zeros(shape[1:], device=device)
    with torch.no_grad():
        _, likelihood = densities(z)
    window = max(1, len(betas) // 10)
    for t in range(1, len(betas)):
        beta, previous = float(betas[t]), float(betas[t - 1])
        log_w += (beta - previous) * likelihood.double()
        z, likelihood, accept = _hmc(densities, z, beta, eps, int(leapfrog_steps))
        rate = accept.mean(0)  # per data point, over chains
        eps = eps * torch.where(rate > target_accept, 1.02, 0.98)
        if t > len(betas) - 1 - window:
            accepted += rate / window
    # the reverse chain's increments are negative: its weights estimate 1 / p(x), and minus
    # the log of their mean is an upper bound on log p(x)
    estimate, stderr = _log_mean_exp(log_w)
    if reverse:
        estimate = -estimate
    return AISResult(estimate.float().cpu(), stderr.float().cpu(), accepted.cpu(), eps.cpu(),
                     len(betas) - 1, int(num_chains), int(leapfrog_steps), float(target_accept),
                     "reverse" if reverse else "forward")


def _log_mean_exp(log_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:math:`\\log \\frac{1}{C}\\sum_c w_c` over chains (dim 0) and its standard error by
    the delta method, :math:`\\mathrm{sd}(w) / (\\sqrt{C}\\, \\bar w)`."""
    chains = log_w.shape[0]
    estimate = torch.logsumexp(log_w, 0) - math.log(chains)
    relative = (log_w - estimate).exp()  # w_c / mean(w)
    stderr = relative.std(0, unbiased=True) / math.sqrt(chains) if chains > 1 else torch.full_like(estimate, math.inf)
    return estimate, stderr


def _hmc(densities: _Densities, z: dict[str, torch.Tensor], beta: float, eps: torch.Tensor,
         steps: int) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    r"""One HMC transition leaving :math:`p(z) p(x \mid z)^\beta` invariant, for every chain
    and data point at once; returns the new state, its :math:`\log p(x \mid z)` and the
    acceptance indicators ``(chains, batch)``."""
    names = list(z)

    def potential_and_grad(state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, list]:
        with torch.enable_grad():
            leaves = {n: v.detach().requires_grad_(True) for n, v in state.items()}
            prior, likelihood = densities(leaves)
            energy = -(prior + beta * likelihood)
            grads = torch.autograd.grad(energy.sum(), [leaves[n] for n in names])
        return energy.detach(), likelihood.detach(), [g.detach() for g in grads]

    def scaled(step: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return step.reshape((1, -1) + (1,) * (like.dim() - 2))  # per data point, (1, batch, 1...)

    energy0, likelihood0, grads = potential_and_grad(z)
    momentum = {n: torch.randn_like(z[n]) for n in names}
    kinetic0 = sum(_per_point(m.pow(2)) for m in momentum.values()) / 2
    state = dict(z)
    p = {n: momentum[n] - scaled(eps, grads[i]) * grads[i] / 2 for i, n in enumerate(names)}
    for step in range(steps):
        state = {n: state[n] + scaled(eps, p[n]) * p[n] for n in names}
        energy, likelihood, grads = potential_and_grad(state)
        if step < steps - 1:
            p = {n: p[n] - scaled(eps, grads[i]) * grads[i] for i, n in enumerate(names)}
    p = {n: p[n] - scaled(eps, grads[i]) * grads[i] / 2 for i, n in enumerate(names)}
    kinetic = sum(_per_point(v.pow(2)) for v in p.values()) / 2
    log_ratio = (energy0 + kinetic0) - (energy + kinetic)
    accept = (torch.rand_like(log_ratio).log() < log_ratio) & torch.isfinite(log_ratio)
    new = {n: torch.where(_expand(accept, state[n]), state[n], z[n]) for n in names}
    return new, torch.where(accept, likelihood, likelihood0), accept.float()


def _per_point(t: torch.Tensor) -> torch.Tensor:
    """Sum a ``(chains, batch, ...)`` tensor over its event dimensions."""
    return t.reshape(t.shape[0], t.shape[1], -1).sum(-1)


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.reshape(mask.shape + (1,) * (like.dim() - 2))


def bdmc(model: Callable, *args: Any, num_steps: int = 1000, num_chains: int = 16,
         **kwargs: Any) -> dict[str, Any]:
    r"""
    Bidirectional Monte Carlo on data simulated from ``model``: draw :math:`(z, x)` from the
    model (``num_chains`` draws of :math:`z` per data point, one :math:`x` each: the first
    chain's), then run AIS forwards (a lower bound on :math:`\log p(x)`) and backwards from the
    simulated :math:`z` (an exact posterior sample; an upper bound).

    ``args`` and ``kwargs`` are the model's, with its observed data (whose values are replaced
    by the simulated ones; they set the batch size). Further keywords of :func:`ais`
    (``leapfrog_steps``, ``step_size``, ``target_accept``, ``schedule``) are passed on.

    :returns: ``{"x": the simulated observations, "lower": AISResult, "upper": AISResult,
        "gap": mean upper - lower (nats per point)}``.
    """
    ais_keys = {"leapfrog_steps", "step_size", "target_accept", "schedule"}
    options = {k: kwargs.pop(k) for k in list(kwargs) if k in ais_keys}
    densities = _Densities(model, args, kwargs, 1)
    z_sim, x_sim = densities.simulate()
    observed = {name: value[0] for name, value in x_sim.items()}  # (batch, ...)
    conditioned = poutine.condition(model, data=observed)
    lower = ais(conditioned, *args, num_steps=num_steps, num_chains=num_chains, **options, **kwargs)
    # exact posterior samples of p(z | x_sim): the simulating draw, the same in every chain
    start = {name: value.expand((num_chains,) + value.shape[1:]).clone() for name, value in z_sim.items()}
    upper = ais(conditioned, *args, num_steps=num_steps, num_chains=num_chains,
                reverse_from=start, **options, **kwargs)
    return {"x": observed, "lower": lower, "upper": upper,
            "gap": float((upper.log_likelihood - lower.log_likelihood).mean())}


__all__ = ["AISResult", "ais", "bdmc", "sigmoid_schedule"]
