r"""
The contract of a model family: everything particular to a family that a user names
(``pyrogen train gan``) sits in one :class:`Family` subclass, and the shared machinery
(the command line, the trainer, ``evaluate``/``sample``/``diagnose``) asks it instead of
comparing names.

A family declares its facade (whose ``fit`` says how the trainer steps it), its own
options (:class:`~pyrogen.families.options.Option`), the defaults that differ per data set,
the training options whose defaults differ for it, and overrides the hooks whose default
does not fit it. The defaults of its model options are the facade's own keyword
defaults (read from its signature), so ``pyrogen train FAMILY`` and ``Facade(shape)`` build
the same model; :meth:`Family.defaults` adds the per-data-set values that both read.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from pyrogen.data import DATASETS
from pyrogen.families.options import Option
from pyrogen.infer import bits_per_dim, elbo, log_likelihood
from pyrogen.infer.importance import estimated_seconds

#: the longest importance-sampling evaluation ``pyrogen evaluate`` starts (seconds, estimated)
MAX_EVALUATION_SECONDS = 24 * 3600
from pyrogen.models.base import Facade
from pyrogen.train import Step, TrainConfig
from pyrogen.train.config import CONFIG_GROUPS
from pyrogen.train.trainer import STEPS


@dataclasses.dataclass
class Request:
    """What a command asks of a family beyond the run: ``pyrogen evaluate``'s and
    ``pyrogen sample``'s options (fields a command does not have keep their defaults), and
    for ``--features`` a function that loads the classifier of that run (called where the
    metrics need it, so the random stream is the same whichever family asks)."""

    device: str = "cpu"
    iw_samples: int = 1000
    batch_size: int = 100
    features: Any = None
    classifier: Callable[[], Any] | None = None
    num_samples: int | None = None
    num: int = 64
    label: int | None = None
    completions: int = 3
    seed: int = 0
    ais: int | None = None
    ais_chains: int = 16
    ais_observation: str | None = None
    bdmc: int | None = None
    #: ``--inductor``: the importance-sampling chunks compiled by ``torch.compile``
    inductor: bool = False
    #: ``--ais-observation gaussian``: the validation points that choose sigma
    sigma_points: int = 100


class Family:
    """
    Base class of the model families (:mod:`pyrogen.families`). A subclass sets the class
    attributes and overrides the hooks whose defaults (those of a VAE-like model: an ELBO,
    an importance-sampled likelihood, decoded samples) do not fit it.
    """

    #: the name a user types (``pyrogen train NAME``)
    name: ClassVar[str]
    #: one line for ``pyrogen train --help``
    summary: ClassVar[str]
    #: the facade class; its ``fit`` chooses the trainer's step
    facade: ClassVar[type[Facade]]
    #: the family's own options; model options are facade keywords
    options: ClassVar[tuple[Option, ...]] = ()
    #: data set -> the defaults that differ there (model options or TrainConfig fields)
    dataset_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    #: TrainConfig fields whose default differs for this family on every data set
    train_overrides: ClassVar[dict[str, Any]] = {}
    #: data set -> the quality its defaults must reach there (``pytest -m quality`` checks
    #: it): a score of ``pyrogen evaluate --features`` (or ``fd_over_floor``, the Frechet
    #: distance over its real-vs-real floor) -> its bound; :data:`LOWER_IS_BETTER` scores
    #: are upper bounds, the others lower bounds
    quality: ClassVar[dict[str, dict[str, float]]] = {}
    #: notes that ``pyrogen train NAME --help`` prints under a shared group (group -> text)
    group_notes: ClassVar[dict[str, str]] = {}
    #: how ``--binarize`` defaults, in words (see :meth:`binarize_for`)
    binarize_text: ClassVar[str] = ("dynamic for the bernoulli likelihood, none otherwise; "
                                    "static for binarized-mnist")

    # ------------------------------------------------------------------ defaults
    @property
    def fit(self) -> str:
        """How the trainer fits it (:attr:`Facade.fit <pyrogen.models.base.Facade.fit>`)."""
        return self.facade.fit

    def step(self, config: TrainConfig | None = None, data: Any = None) -> Step:
        """A fresh training step for this family (:data:`pyrogen.train.trainer.STEPS`), for
        the run of ``config`` on ``data`` where the step needs them."""
        return STEPS[self.fit]()

    def train_groups(self) -> tuple[str, ...]:
        """The TrainConfig groups the family's training reads (its step's, shown by ``--help``)."""
        return self.step().groups

    def model_options(self) -> tuple[Option, ...]:
        """The family's options that are keyword arguments of its facade (not, e.g., a
        DFC-VAE's feature-network path, which the family resolves itself)."""
        return tuple(o for o in self.options if o.facade)

    def model_defaults(self, dataset: str | None = None) -> dict[str, Any]:
        """The model options' defaults: the facade's keyword defaults, with the data set's
        own values (:attr:`dataset_defaults`) where it has them."""
        signature = inspect.signature(self.facade.__init__).parameters
        values = {}
        for option in self.model_options():
            default = signature[option.name].default
            values[option.name] = list(default) if isinstance(default, tuple) else default
        overrides = self.dataset_defaults.get(dataset, {}) if dataset is not None else {}
        values.update({k: v for k, v in overrides.items() if k in values})
        return values

    def train_defaults(self, dataset: str | None = None) -> dict[str, Any]:
        """The defaults of the TrainConfig fields the family's training reads:
        TrainConfig's, with :attr:`train_overrides` and the data set's own values."""
        fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
        names = [n for g in self.train_groups() if g != "family" for n in CONFIG_GROUPS[g]]
        defaults = TrainConfig()
        values = {n: getattr(defaults, n) for n in names}
        values.update(self.train_overrides)
        overrides = self.dataset_defaults.get(dataset, {}) if dataset is not None else {}
        values.update({k: v for k, v in overrides.items() if k in fields})
        if dataset is not None:
            values["dataset"] = dataset
        values["binarize"] = self.default_binarize(values["dataset"], self.model_defaults(dataset))
        return values

    def defaults(self, dataset: str | None = None) -> dict[str, dict[str, Any]]:
        """
        The family's settings for a data set, read by the command line and the Python API
        alike: ``{"model": facade keywords, "train": TrainConfig fields}``. ``None`` gives the
        generic ones (the facade's own defaults). Example::

            settings = pyrogen.families.get("gan").defaults("digits")
            gan = GAN(data.shape, **settings["model"])
            config = TrainConfig(model="gan", **settings["train"])
        """
        if dataset is not None and dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
        return {"model": self.model_defaults(dataset), "train": self.train_defaults(dataset)}

    def train_config(self, dataset: str = "digits", **options: Any) -> TrainConfig:
        """A :class:`~pyrogen.train.TrainConfig` of this family for ``dataset``: its defaults
        there, then ``options`` (TrainConfig fields, or ``model_config``)."""
        values = {"model": self.name, **self.train_defaults(dataset), **options}
        return TrainConfig(**values)

    def default_binarize(self, dataset: str, model_options: dict[str, Any]) -> str:
        """How the data are binarised when the user does not say: Larochelle's fixed draw for
        ``binarized-mnist``, else the family's choice (:meth:`binarize_for`)."""
        return "static" if dataset == "binarized-mnist" else self.binarize_for(model_options)

    def binarize_for(self, model_options: dict[str, Any]) -> str:
        """Dynamic binarisation for a Bernoulli likelihood, grey levels otherwise."""
        return "dynamic" if model_options.get("likelihood") == "bernoulli" else "none"

    # ------------------------------------------------------------------ building
    def dependent_defaults(self, given: dict[str, Any]) -> dict[str, Any]:
        """Defaults of model options that depend on what the user gave (``given``: the model
        options typed); they apply where the user did not give the option itself."""
        return {}

    def check(self, model_options: dict[str, Any]) -> None:
        """Refuse, with a ``ValueError`` naming them, options that cannot go together."""

    def complete(self, model_options: dict[str, Any], data: Any) -> None:
        """Add the model options that come from the data set (classes, image shape)."""

    def build(self, model_options: dict[str, Any], data: Any) -> Facade:
        """The facade for ``data`` from the user's (completed) options."""
        return self.facade(data.shape, **{o.name: model_options[o.name]
                                          for o in self.model_options() if o.name in model_options})

    def rebuild(self, model_config: dict[str, Any]) -> Facade:
        """The facade from a saved ``model.config`` (a checkpoint's ``model_config``)."""
        return self.facade(**model_config)

    # ------------------------------------------------------------------ commands
    def evaluate(self, model: Facade, config: TrainConfig, data: Any, split: Any,
                 request: Request) -> dict[str, Any]:
        """``pyrogen evaluate``: the ELBO and the importance-sampled log-likelihood per data
        point (and bits per dimension) of ``split``, plus sample quality with ``--features``."""
        from pyrogen.families.quality import quality

        self.check_ais(model, request)  # refuse before any work where AIS does not apply
        batches = [model.inputs(b) for b in split.batches(request.batch_size, seed=config.seed)]
        if request.iw_samples > 1:
            cost = estimated_seconds(model.model, model.guide, batches, request.iw_samples)
            if cost > MAX_EVALUATION_SECONDS:
                raise ValueError(
                    f"--iw-samples {request.iw_samples} would take about {cost / 3600:.3g} hours "
                    f"on this machine for {len(split)} points (measured on a first chunk; more "
                    f"than the {MAX_EVALUATION_SECONDS // 3600} hours pyrogen evaluate runs); "
                    f"about {max(1, int(request.iw_samples * 3600 / cost))} samples take an hour")
        start = time.perf_counter()
        elbos = elbo(model.model, model.guide, batches)
        lls = log_likelihood(model.model, model.guide, batches, num_samples=request.iw_samples,
                             progress=True, backend="inductor" if request.inductor else "eager")
        result = {
            "elbo": float(elbos.mean()),
            "log_likelihood": float(lls.mean()),
            "nll": float(-lls.mean()),
            "bits_per_dim": float(bits_per_dim(lls.mean(), model.scored_dimensions(split.num_dims))),
            "iw_samples": request.iw_samples,
            "seconds": time.perf_counter() - start,
        }
        for key, value in self.evaluate_more(model, batches).items():
            if value is None:  # the family says the figure does not apply
                result.pop(key, None)
            else:
                result[key] = value
        if request.features is not None:
            result.update(quality(request, model, data, split))
        if request.ais:
            result["ais"] = self.evaluate_ais(model, config, data, split, request)
        return result

    #: whether ``evaluate`` estimates a likelihood by importance sampling (``--iw-samples``)
    importance_sampled: ClassVar[bool] = True

    #: the observation model ``--ais`` uses when ``--ais-observation`` is not given:
    #: ``"model"`` (the model's own likelihood :math:`p(x \mid z)`) or ``"gaussian"``
    default_observation: ClassVar[str] = "model"
    #: the observation scales sigma that ``--ais-observation gaussian`` chooses among
    SIGMAS = (0.025, 0.05, 0.1, 0.2, 0.4)

    def observation(self, request: Request) -> str:
        """The observation model of ``request``'s ``--ais``: its ``--ais-observation`` or the
        family's :attr:`default_observation`."""
        return request.ais_observation or self.default_observation

    def check_ais(self, model: Facade, request: Request) -> None:
        """Refuse, before any work, an ``--ais`` request (``--ais-observation``, ``--bdmc``)
        that cannot apply to ``model``."""
        if request.bdmc and not request.ais:
            raise ValueError("--bdmc POINTS runs bidirectional Monte Carlo with the schedule of "
                             "--ais STEPS; give --ais too")
        if request.ais_observation and not request.ais:
            raise ValueError("--ais-observation chooses the likelihood of --ais STEPS; give --ais too")
        if not request.ais:
            return
        if self.observation(request) == "gaussian":
            self.gaussian_observation(model, 1.0)
        else:
            self.ais_model(model)

    def ais_model(self, model: Facade) -> Callable:
        r"""The Pyro model whose latents ``pyrogen evaluate --ais`` anneals over (its decoder's
        likelihood gives :math:`p(x \mid z)`); a ``ValueError`` saying why where AIS does not
        apply. By default the facade's model."""
        return model.model

    def gaussian_observation(self, model: Facade, sigma: float) -> Callable:
        r"""The Pyro model :math:`z \sim p(z)`, :math:`x \mid z \sim \mathcal{N}(\bar x(z),
        \sigma^2 I)` with :math:`\bar x(z)` the mean the decoder gives (Wu et al., 2017), for
        ``--ais-observation gaussian``: by default the facade's own ``gaussian_observation``
        (:meth:`~pyrogen.models.VAE.gaussian_observation`), else a ``ValueError`` saying why
        (a family without an unconditional decoder)."""
        if hasattr(model, "gaussian_observation"):
            return model.gaussian_observation(sigma)
        raise ValueError(f"--ais-observation gaussian needs an unconditional decoder x(z); a "
                         f"{self.name} has none (use --ais-observation model)")

    def evaluate_ais(self, model: Facade, config: TrainConfig, data: Any, split: Any,
                     request: Request) -> dict[str, Any]:
        r"""``pyrogen evaluate --ais STEPS``: annealed importance sampling of every point of
        ``split`` (:func:`~pyrogen.infer.ais`), a stochastic lower bound on
        :math:`\log p(x)` with its standard error over chains, under the model's own
        likelihood or (``--ais-observation gaussian``) under
        :math:`p(x \mid z) = \mathcal{N}(\bar x(z), \sigma^2 I)` with :math:`\sigma` the one
        of :attr:`SIGMAS` whose AIS estimate (a tenth of the schedule, 4 chains) is highest on
        ``request.sigma_points`` validation points (training points where the run has no
        validation split), the rule of Wu et al. (2017). With ``--bdmc POINTS``, also
        bidirectional Monte Carlo (:func:`~pyrogen.infer.bdmc`) on ``POINTS`` points
        simulated from that model: the gap between its upper and lower bounds."""
        from pyrogen.infer import ais

        model.eval()
        gaussian = self.observation(request) == "gaussian"
        extra: dict[str, Any] = {}
        if gaussian:
            chooser = data.valid if len(data.valid) else data.train
            x_val = model.inputs(next(iter(chooser.batches(min(request.sigma_points, len(chooser)),
                                                            seed=config.seed))))
            scores = {}
            for sigma in self.SIGMAS:
                found = ais(self.gaussian_observation(model, sigma), *x_val,
                            num_steps=max(10, request.ais // 10), num_chains=4)
                scores[sigma] = float(found.log_likelihood.mean())
            sigma = max(scores, key=scores.get)
            target = self.gaussian_observation(model, sigma)
            extra = {"observation": "N(x(z), sigma^2 I) (Wu et al., 2017)", "sigma": sigma,
                     "sigma_rule": f"the best of {list(self.SIGMAS)} by AIS on {len(x_val[0])} "
                                   f"{'validation' if len(data.valid) else 'training'} points",
                     "sigma_scores": {str(k): v for k, v in scores.items()}}
        else:
            target = self.ais_model(model)
            extra = {"observation": "the model's own likelihood p(x | z)"}
        batches = [model.inputs(b) for b in split.batches(request.batch_size, seed=config.seed)]
        start = time.perf_counter()
        values, errors, accept, found = [], [], [], None
        for args in batches:
            found = ais(target, *args, num_steps=request.ais, num_chains=request.ais_chains)
            values.append(found.log_likelihood)
            errors.append(found.stderr)
            accept.append(found.accept_rate)
        values, errors = torch.cat(values), torch.cat(errors)
        result = {"estimator": "annealed importance sampling (a stochastic lower bound on log p(x))",
                  "schedule": "sigmoid", "steps": request.ais, "chains": request.ais_chains,
                  "transition": f"HMC, {found.leapfrog_steps} leapfrog steps, step size per point "
                                f"adapted to acceptance {found.target_accept}",
                  **extra,
                  "log_likelihood": float(values.mean()), "nll": float(-values.mean()),
                  "stderr": float(errors.pow(2).sum().sqrt() / len(errors)),
                  "accept_rate": float(torch.cat(accept).mean()),
                  "seconds": time.perf_counter() - start}
        if request.bdmc:
            result["bdmc"] = self._bdmc(model, target, split, request, config)
        return result

    def _bdmc(self, model: Facade, target: Callable, split: Any, request: Request,
              config: TrainConfig) -> dict[str, Any]:
        """BDMC on ``request.bdmc`` points simulated from ``target`` (the split's first points
        give the model its other inputs: labels, visible quadrants)."""
        from pyrogen.infer import bdmc

        start = time.perf_counter()
        lower, upper = [], []
        for batch in split.head(request.bdmc).batches(request.batch_size, seed=config.seed):
            found = bdmc(target, *model.inputs(batch), num_steps=request.ais, num_chains=request.ais_chains)
            lower.append(found["lower"].log_likelihood)
            upper.append(found["upper"].log_likelihood)
        lower_t, upper_t = torch.cat(lower), torch.cat(upper)
        return {"points": len(lower_t), "data": "simulated from the model (z ~ p(z), x ~ p(x | z))",
                "lower": float(lower_t.mean()), "upper": float(upper_t.mean()),
                "gap": float((upper_t - lower_t).mean()),
                "seconds": time.perf_counter() - start}

    def evaluate_more(self, model: Facade, batches: list[tuple[torch.Tensor, ...]]) -> dict[str, Any]:
        """Entries a family adds to :meth:`evaluate`'s result (``None`` removes one)."""
        return {}

    def sample(self, model: Facade, config: TrainConfig, data: Any | None, request: Request
               ) -> tuple[torch.Tensor, int | None, dict[str, Any]]:
        """``pyrogen sample``: the images to show, images per row (None: square), and what
        the result JSON says of them."""
        if request.label is not None:
            raise ValueError(f"--label needs a label-conditioned model; the run trained a {self.name}")
        return model.sample(request.num), None, {"num": request.num}

    def needs_data_to_sample(self, model: Facade) -> bool:
        """Whether :meth:`sample` draws from data (e.g. completions of test images)."""
        return False

    def diagnosable(self, model: Facade, x: torch.Tensor) -> tuple[Any, float | None]:
        """``pyrogen diagnose``: the generative model to diagnose the guide against, and the
        scale of a surrogate Gaussian likelihood where the model's own is a ``Delta``."""
        return model.model, None


#: the data sets of 28x28 images that share one set of MNIST-sized defaults
MNIST_SIZED = ("mnist", "fashion-mnist", "binarized-mnist")


def per_dataset(digits: dict[str, Any], mnist: dict[str, Any],
                **own: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A :attr:`Family.dataset_defaults`: ``digits``' own values, ``mnist``'s for every data
    set of :data:`MNIST_SIZED`, and on top of those a data set's own values where they differ
    (keywords named by the data set, ``-`` written ``_``: ``fashion_mnist={"epochs": 80}``);
    ``folder`` keeps the facade's generic defaults."""
    unknown = sorted(set(own) - {name.replace("-", "_") for name in MNIST_SIZED})
    if unknown:
        raise ValueError(f"per_dataset: {unknown} are not MNIST-sized data sets {MNIST_SIZED}")
    return {"digits": digits, **{name: {**mnist, **own.get(name.replace("-", "_"), {})}
                                 for name in MNIST_SIZED}}


#: the scores of :attr:`Family.quality` whose bound is an upper one
LOWER_IS_BETTER = ("class_kl", "fd_over_floor", "frechet_distance", "nll", "reconstruction_ratio")


def quality_failures(family: Family, dataset: str, scores: dict[str, float]) -> list[str]:
    """The bounds of ``family.quality[dataset]`` that ``scores`` miss, in words (empty: all met)."""
    scores = dict(scores)
    if "frechet_distance" in scores and "frechet_floor" in scores:
        scores.setdefault("fd_over_floor", scores["frechet_distance"] / scores["frechet_floor"])
    failures = []
    for name, bound in family.quality.get(dataset, {}).items():
        value = scores.get(name)
        upper = name in LOWER_IS_BETTER
        if value is None or (value > bound if upper else value < bound):
            failures.append(f"{name} = {value} ({'<=' if upper else '>='} {bound} wanted)")
    return failures


def check_dataset_defaults(family: Family) -> None:
    """Raise a ``ValueError`` if ``family.dataset_defaults`` names an unknown data set or option."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    names = {o.name for o in family.model_options()}
    for dataset in family.quality:
        if dataset not in DATASETS:
            raise ValueError(f"family {family.name!r}: unknown data set {dataset!r} in its quality")
    for dataset, values in family.dataset_defaults.items():
        if dataset not in DATASETS:
            raise ValueError(f"family {family.name!r}: unknown data set {dataset!r} in its defaults")
        unknown = set(values) - fields - names
        if unknown:
            raise ValueError(f"family {family.name!r}: defaults for {dataset!r} name unknown "
                             f"options {sorted(unknown)}")


def summary_of(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The last record's figures that ``pyrogen train`` prints."""
    keys = ("train_loss", "valid_loss", "binarize", "iterations", "em", "converged",
            "sample_diversity", "collapse")
    last = history[-1]
    return {"epochs": len(history),
            **{k: v for k, v in last.items() if k in keys or k.startswith("loss_")}}


__all__ = ["Family", "LOWER_IS_BETTER", "MNIST_SIZED", "Request", "per_dataset", "check_dataset_defaults", "quality_failures",
           "summary_of"]
