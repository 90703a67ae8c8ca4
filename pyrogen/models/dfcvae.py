r"""
The deep feature-consistent VAE (DFC-VAE) of Hou et al. [1] as a Pyro model/guide pair.

A VAE whose reconstruction term compares the activations of a fixed, pretrained network
:math:`\Phi` on the input and on the reconstruction instead of the pixels. The paper's loss
per image (with VGG19 as :math:`\Phi`) is

.. math::
    \mathcal{L}_{total} = \alpha\, \mathcal{L}_{kl} + \beta \sum_l \mathcal{L}^l_{rec},
    \qquad
    \mathcal{L}^l_{rec} = \frac{1}{2 C^l H^l W^l} \sum_{c, h, w}
        \bigl(\Phi(x)^l_{c,h,w} - \Phi(\bar x)^l_{c,h,w}\bigr)^2,

with layers ``relu1_1``, ``relu2_1``, ``relu3_1`` ("VAE-123"), :math:`\alpha = 1`,
:math:`\beta = 0.5` and a 100-dimensional :math:`z`. The authors' released code has the same
layers, weight (``content_weight = 0.5``) and latent size, with Torch's mean-squared error (a
mean without the 1/2) as the per-layer loss; pyrogen's ``reduction="mean"`` follows the
paper's equation.

In Pyro each layer's term is a factor inside the data plate,
``pyro.factor(f"x_feat_{l}", -w * loss_l)`` with

.. math::
    \mathrm{loss}_l = \frac{1}{2 N_l} \lVert \Phi_l(x) - \Phi_l(\bar x) \rVert^2
    \quad (\texttt{reduction="mean"}), \qquad
    \mathrm{loss}_l = \frac{1}{2} \lVert \Phi_l(x) - \Phi_l(\bar x) \rVert^2
    \quad (\texttt{reduction="sum"}),

where :math:`N_l = C^l H^l W^l`, so the ``Trace_ELBO`` (or ``TraceMeanField_ELBO``) loss is
exactly :math:`w \sum_l \mathrm{loss}_l + \beta\, \mathrm{KL}`, with no constant; with
``reduction="mean"`` it is the paper's :math:`\mathcal{L}_{total}`, ``feature_weight``
:math:`w` playing the paper's :math:`\beta` and the ELBO's KL weight ``beta`` its
:math:`\alpha` (mind the swapped letter).

The paper's :math:`1 / (2 N_l)` assumes VGG19 features of 0-255 images. With a classifier of
[0, 1] images as :math:`\Phi` it makes the feature term about :math:`10^4` times smaller
than the KL, and the posterior collapses: on sklearn's digits (a 15-epoch classifier, latent
8, hidden 64, 30 epochs) ``reduction="mean"`` left 0 active latent dimensions, with 9.5% of
reconstructions labelled correctly by the classifier and a pixel MSE of 0.097, while
``"sum"`` kept 8/8 active, 88% and 0.035. pyrogen's default is therefore ``reduction="sum"``
(sum over each layer's elements); ``reduction="mean"`` reproduces the paper's equation.
The other defaults are the paper's: layers ``relu1``, ``relu2``, ``relu3`` (standing for
``relu1_1``, ``relu2_1``, ``relu3_1``), :math:`w = 0.5` and a 100-dimensional :math:`z`.

The factors are not normalised densities, so :func:`pyrogen.infer.log_likelihood` returns
an importance-sampled :math:`\log \int \exp(-w \sum_l \mathrm{loss}_l)\, p(z)\, dz`
(:math:`\le 0`): an unnormalised log-density of features, not a likelihood of pixels, which
compares only DFC-VAEs with the same :math:`w`, :math:`\Phi` and reduction.

**References**

[1] X. Hou, L. Shen, K. Sun, G. Qiu, "Deep Feature Consistent Variational Autoencoder",
WACV 2017, arXiv:1610.00291.

[2] J. Johnson, A. Alahi, L. Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and
Super-Resolution", ECCV 2016.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from pyrogen.primitives import NamedPyroModule
from pyrogen.models.classifier import Classifier, ImageClassifier
from pyrogen.models.util import batch_size_of, beta_scale, data_plate
from pyrogen.models.vae import AmortisedFacade, VAEGuide
from pyrogen.nn import build_decoder, build_encoder
from pyrogen.nn.vgg import VGG19Features

REDUCTIONS = ("mean", "sum")


def _freeze_(module: nn.Module) -> None:
    """Turn every parameter of ``module`` into a buffer, in place: ``.to()`` still moves it
    and ``state_dict`` still holds it, but no optimiser, ELBO module or param store sees it."""
    for m in module.modules():
        for name, param in list(m._parameters.items()):
            if param is not None:
                del m._parameters[name]
                m.register_buffer(name, param.detach())


class FrozenFeatures(nn.Module):
    r"""
    A fixed copy of a feature network :math:`\Phi`: ``forward(x)`` returns the list
    :math:`[\Phi_l(x)]_l`. Its parameters are copied into buffers, so they get no gradient
    and are in no optimiser's list, and it stays in evaluation mode whatever ``train()`` says.

    :param torch.nn.Module net: with ``layers`` given, a network with a method
        ``features(x, layers) -> dict`` (e.g. :class:`~pyrogen.models.classifier.Classifier`);
        with ``layers=None``, a network whose ``net(x)`` returns a tensor or a list of tensors.
    :param layers: the layer names to read, or ``None``.
    """

    def __init__(self, net: nn.Module, layers: Sequence[str] | None) -> None:
        if layers is not None:
            method = getattr(net, "features", None)
            if not callable(method) or isinstance(method, nn.Module):
                raise TypeError(
                    f"feature_net ({type(net).__name__}) has no method features(x, layers); "
                    "pass layers=None to use the list of tensors that feature_net(x) returns"
                )
            known = getattr(net, "LAYERS", None)
            if isinstance(layers, str) or not layers or (
                known is not None and any(name not in known for name in layers)
            ):
                raise ValueError(
                    f"layers must be a non-empty sequence from {known}, got {layers!r}"
                )
        super().__init__()
        self.net = copy.deepcopy(net)
        _freeze_(self.net)
        self.layers = None if layers is None else tuple(layers)
        self.train(False)

    def train(self, mode: bool = True) -> FrozenFeatures:
        """Stay in evaluation mode whatever ``mode`` says; returns ``self``."""
        # a fixed network keeps its batch-norm statistics and drops no units
        return super().train(False)

    def site_names(self, count: int) -> list[str]:
        """The observation sites ``"x_feat_{layer}"`` (``"x_feat_{index}"`` without names)."""
        return [f"x_feat_{name}" for name in (self.layers or range(count))]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        r"""The list :math:`[\Phi_l(x)]_l` for images ``x`` ``(..., C, H, W)``, one tensor
        ``(..., C^l, H^l, W^l)`` per layer, in the order of ``layers`` (or of the network's
        output, with ``layers=None``)."""
        batch_shape = x.shape[:-3]
        flat = x.reshape(-1, *x.shape[-3:])
        if self.layers is None:
            out = self.net(flat)
            out = [out] if isinstance(out, torch.Tensor) else list(out)
        else:
            feats = self.net.features(flat, self.layers)
            out = [feats[name] for name in self.layers]
        return [f.reshape(*batch_shape, *f.shape[1:]) for f in out]


class DFCVAEModel(NamedPyroModule):
    r"""
    The generative model of the DFC-VAE [1]:

    .. math::
        z_n \sim \mathcal{N}(0, I), \qquad \bar x_n = \mathrm{sigmoid}(g_\theta(z_n)), \qquad
        \log p(x_n \mid z_n) \propto -w \sum_l \mathrm{loss}_l(\Phi_l(x_n), \Phi_l(\bar x_n))
            - \lambda \sum_d H(x_{nd}, \bar x_{nd}),

    with :math:`H(x, \bar x) = -x \log \bar x - (1 - x) \log(1 - \bar x)` the pixels'
    binary cross-entropy (the Bernoulli likelihood's, used as a factor for grey levels too),
    weighted by ``pixel_weight`` :math:`\lambda \ge 0` (0, the paper's model, by default).
    One factor site ``"x_feat_{l}"`` per layer and, with :math:`\lambda > 0`, one
    ``"x_pixels"`` (none when generating), all inside the ``"data"`` plate. With :class:`DFCVAEGuide`, ``Trace_ELBO`` is exactly
    :math:`w \sum_l \mathrm{loss}_l + \beta\,\mathrm{KL}` (module docstring); ``beta`` scales
    the KL term as in :class:`~pyrogen.models.vae.VAEModel`.

    :param torch.nn.Module decoder: maps ``(..., latent_dim)`` to logits ``(..., *data_shape)``.
    :param FrozenFeatures features: the fixed feature network :math:`\Phi`.
    :param int latent_dim: the dimension of :math:`z`.
    :param tuple data_shape: ``(C, H, W)``.
    :param float feature_weight: :math:`w > 0` (the paper's :math:`\beta`, 0.5).
    :param str reduction: ``"sum"`` (1/2, the default) or ``"mean"`` (the paper's
        :math:`1 / (2 N_l)`).
    :param float pixel_weight: :math:`\lambda \ge 0`, the weight of the pixels' cross-entropy.
    """

    def __init__(
        self,
        decoder: nn.Module,
        features: FrozenFeatures,
        latent_dim: int,
        data_shape: Sequence[int],
        feature_weight: float = 0.5,
        reduction: str = "sum",
        pixel_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.decoder = decoder
        self.features = features
        self.latent_dim = int(latent_dim)
        self.data_shape = tuple(data_shape)
        self.feature_weight = float(feature_weight)
        self.reduction = reduction
        self.pixel_weight = float(pixel_weight)
        self.register_buffer("prior_loc", torch.zeros(self.latent_dim))
        self.register_buffer("prior_scale", torch.ones(self.latent_dim))

    def prior(self) -> dist.TorchDistribution:
        r"""The prior :math:`p(z) = \mathcal{N}(0, I)` of one data point."""
        return dist.Normal(self.prior_loc, self.prior_scale).to_event(1)

    def feature_loss(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        r""":math:`\mathrm{loss}_l` of one layer per data point: the squared error over the
        layer's last ``target.dim() - 1`` dimensions (one image's activation), halved, and
        divided by :math:`N_l` for ``reduction="mean"``."""
        event_dims = tuple(range(-(target.dim() - 1), 0))
        loss = 0.5 * (predicted - target).square().sum(event_dims)
        if self.reduction == "mean":
            loss = loss / math.prod(target.shape[1:])
        return loss

    def forward(
        self,
        x: torch.Tensor | None = None,
        *,
        num_data: int | None = None,
        beta: float = 1.0,
        num_samples: int | None = None,
    ) -> torch.Tensor:
        """
        :param x: images ``(batch, *data_shape)`` in [0, 1] to condition on, or ``None`` to
            draw ``num_samples`` latents (no feature factors then).
        :param int num_data: the size of the data set the minibatch comes from.
        :param float beta: the weight of the KL term (> 0).
        :param int num_samples: the number of points to generate when ``x`` is None.
        :returns: the latent draws ``z``.
        """
        batch_size = batch_size_of(x, num_samples, self.data_shape, "DFCVAEModel")
        with data_plate(batch_size, num_data, self.prior_loc.device):
            with beta_scale(beta):
                z = pyro.sample("z", self.prior())
            if x is not None:
                with torch.no_grad():
                    targets = self.features(x)
                logits = self.decoder(z)
                predicted = self.features(torch.sigmoid(logits))
                names = self.features.site_names(len(predicted))
                for name, pred, target in zip(names, predicted, targets):
                    pyro.factor(name, -self.feature_weight * self.feature_loss(pred, target))
                if self.pixel_weight > 0:
                    cross_entropy = F.binary_cross_entropy_with_logits(
                        logits, x.expand_as(logits), reduction="none").flatten(-len(self.data_shape)).sum(-1)
                    pyro.factor("x_pixels", -self.pixel_weight * cross_entropy)
        return z


class DFCVAEGuide(VAEGuide):
    r"""The amortised Gaussian posterior :math:`q_\phi(z \mid x)`, the same as the VAE's
    (:class:`~pyrogen.models.vae.VAEGuide`); ``beta`` must match the model's."""


def _resolve_feature_net(feature_net: object) -> tuple[nn.Module, dict[str, Any] | None]:
    """The network to freeze, and the config that rebuilds its architecture (if any)."""
    if isinstance(feature_net, Mapping) and feature_net.get("kind") == "vgg19":
        return VGG19Features(), {"kind": "vgg19"}  # the weights come with the checkpoint
    if isinstance(feature_net, Mapping):
        net = Classifier(**feature_net)
        return net, dict(net.config)
    if isinstance(feature_net, VGG19Features):
        return feature_net, dict(feature_net.config)
    if isinstance(feature_net, ImageClassifier):
        feature_net = feature_net.net
    if isinstance(feature_net, Classifier):
        return feature_net, dict(feature_net.config)
    if isinstance(feature_net, nn.Module):
        return feature_net, None
    raise TypeError(
        "feature_net must be a Classifier or ImageClassifier, a Classifier config (dict), "
        "VGG19Features (pyrogen.nn.load_vgg19_features), or "
        f"an nn.Module returning a list of feature maps; got {type(feature_net).__name__}"
    )


class DFCVAE(AmortisedFacade):
    r"""
    A DFC-VAE [1]: :class:`DFCVAEModel` and :class:`DFCVAEGuide` built from pyrogen's
    networks around a fixed feature network, with ``sample``, ``reconstruct``, ``encode``,
    ``decode``. Train it with any Pyro ELBO::

        clf = ImageClassifier((1, 28, 28), num_classes=10)   # trained first, then fixed
        dfc = DFCVAE((1, 28, 28), clf, latent_dim=100, arch="conv")
        svi = SVI(dfc.model, dfc.guide, pyro.optim.Adam({"lr": 5e-4}), Trace_ELBO())
        for x in batches:
            svi.step(x, num_data=60000)

    The feature network is deep-copied and frozen (:class:`FrozenFeatures`): training moves
    neither the copy nor the network passed in. ``dfc.config`` holds the constructor
    arguments with ``feature_net`` replaced by the classifier's ``config``; ``DFCVAE(**config)``
    rebuilds the architecture with an untrained classifier, and ``load_state_dict`` then
    restores the trained features with everything else (they are buffers of the model).
    A network other than a pyrogen classifier gets ``feature_net=None`` in the config and must
    be passed again.

    Pretrained VGG19 weights on disk (as the paper; nothing is downloaded) plug in as a module
    returning the three activations, with ``layers=None``::

        import torchvision

        class VGG19Features(nn.Module):
            # relu1_1, relu2_1, relu3_1 are outputs 1, 6 and 11 of vgg19().features
            def __init__(self, path):
                super().__init__()
                vgg = torchvision.models.vgg19()
                vgg.load_state_dict(torch.load(path, weights_only=True))
                self.blocks = vgg.features[:12]
                self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1))
                self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1))

            def forward(self, x):   # x in [0, 1]; grey images: x.expand(-1, 3, -1, -1) first
                h, out = (x - self.mean) / self.std, []
                for i, block in enumerate(self.blocks):
                    h = block(h)
                    if i in (1, 6, 11):
                        out.append(h)
                return out

        dfc = DFCVAE((3, 64, 64), VGG19Features("vgg19.pth"), layers=None)

    The paper's ``reduction="mean"`` suits large features such as VGG19's on 0-255 images; with
    a classifier of [0, 1] images it needs a much larger ``feature_weight`` to keep the
    posterior from collapsing, hence the default ``"sum"`` (module docstring).

    :param tuple data_shape: ``(C, H, W)``, e.g. ``(3, 64, 64)``.
    :param feature_net: the fixed network :math:`\Phi`: an
        :class:`~pyrogen.models.classifier.ImageClassifier` or
        :class:`~pyrogen.models.classifier.Classifier`; a classifier's ``config`` dict (builds
        an untrained one, for ``load_state_dict`` to fill); or any ``nn.Module`` (then with
        ``layers=None``, its output: a tensor or a list of tensors).
    :param int latent_dim: the dimension of :math:`z` (the paper's 100).
    :param tuple hidden: hidden sizes of the MLP encoder and decoder (ignored by ``"conv"``).
    :param str arch: ``"conv"`` (28x28 or 64x64 images) or ``"mlp"``.
    :param layers: the layers of ``feature_net`` to compare (``"relu1"``, ``"relu2"``,
        ``"relu3"`` of a classifier stand for VGG19's ``relu1_1``, ``relu2_1``, ``relu3_1``),
        or ``None`` to use every output of ``feature_net(x)``.
    :param float feature_weight: :math:`w`, the paper's :math:`\beta` (0.5).
    :param str reduction: ``"sum"`` over each layer's elements (default) or ``"mean"``, the
        paper's :math:`1 / (2 N_l)`.
    :param str activation: hidden activation of encoder and decoder; ``None`` keeps defaults.
    :param float pixel_weight: :math:`\lambda \ge 0`, the weight of a pixel term beside the
        features (:class:`DFCVAEModel`); 0, the paper's model, by default. On MNIST a pure
        feature loss of a digit classifier draws textured strokes and too few of some classes;
        the pixel term anchors the images (``pyrogen.families.dfcvae``).
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        feature_net: nn.Module | Mapping[str, Any],
        latent_dim: int = 100,
        hidden: Sequence[int] = (400,),
        arch: str = "conv",
        layers: Sequence[str] | None = ("relu1", "relu2", "relu3"),
        feature_weight: float = 0.5,
        reduction: str = "sum",
        activation: str | None = None,
        pixel_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if int(latent_dim) < 1:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim}")
        if not float(feature_weight) > 0:
            raise ValueError(f"feature_weight must be > 0, got {feature_weight}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if not float(pixel_weight) >= 0:
            raise ValueError(f"pixel_weight must be >= 0, got {pixel_weight}")
        data_shape = tuple(int(d) for d in data_shape)
        if len(data_shape) != 3:
            raise ValueError(f"data_shape must be (C, H, W), got {data_shape}")
        net, net_config = _resolve_feature_net(feature_net)
        net_shape = getattr(net, "data_shape", None)
        if net_shape is not None and tuple(net_shape) != data_shape:
            raise ValueError(
                f"feature_net reads images of shape {tuple(net_shape)}, but data_shape is "
                f"{data_shape}"
            )
        hidden = tuple(int(h) for h in hidden)
        self.config: dict[str, Any] = dict(
            data_shape=list(data_shape),
            feature_net=net_config,
            latent_dim=int(latent_dim),
            hidden=list(hidden),
            arch=arch,
            layers=None if layers is None else list(layers),
            feature_weight=float(feature_weight),
            reduction=reduction,
            activation=activation,
            pixel_weight=float(pixel_weight),
        )
        features = FrozenFeatures(net, layers)
        encoder = build_encoder(arch, data_shape, latent_dim, hidden=hidden, activation=activation)
        decoder = build_decoder(
            arch, latent_dim, data_shape, hidden=tuple(reversed(hidden)), activation=activation
        )
        self.model = DFCVAEModel(
            decoder, features, latent_dim, data_shape, feature_weight, reduction, pixel_weight
        )
        self.guide = DFCVAEGuide(encoder, data_shape)

    @property
    def features(self) -> FrozenFeatures:
        r"""The fixed feature network :math:`\Phi`."""
        return self.model.features

    def decoder_mean(self, z: torch.Tensor) -> torch.Tensor:
        r"""The image :math:`\bar x = \mathrm{sigmoid}(g_\theta(z))` in [0, 1]."""
        return torch.sigmoid(self.model.decoder(z))
