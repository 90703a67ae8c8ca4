r"""
An image classifier: the fixed feature network of the DFC-VAE's perceptual loss and of the
Fréchet distance, trained by pyrogen itself because no pretrained weights can be downloaded.

The network is a small VGG-like stack [1]: stage :math:`s` is a 3x3 convolution and a ReLU
(named ``"relu{s}"``), preceded by a 2x2 max-pooling from the second stage on, so
``"relu1"``, ``"relu2"``, ``"relu3"`` play the parts of VGG19's ``relu1_1``, ``relu2_1``,
``relu3_1`` (the first ReLU at full, half and quarter resolution) that the DFC-VAE [2] reads.
Adaptive average pooling to 2x2 (coarse position survives, which digits need), a hidden layer
(``"penultimate"``, the embedding for Fréchet distances) and a linear layer give the logits,
so any image side :math:`\ge 2^{S - 1}` works (:math:`S` stages).

Training is maximum likelihood of the labels, written as a Pyro model with an empty guide,
so pyrogen's SVI machinery trains it like every other model:

.. math::
    y_n \mid x_n \sim \mathrm{Categorical}(\mathrm{softmax}(f_\theta(x_n))),
    \qquad -\mathrm{ELBO} = -\frac{N}{B} \sum_{n \in \text{batch}} \log p_\theta(y_n \mid x_n),

the summed cross-entropy, scaled from the minibatch to the data set.

**References**

[1] K. Simonyan, A. Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015.

[2] X. Hou, L. Shen, K. Sun, G. Qiu, "Deep Feature Consistent Variational Autoencoder",
WACV 2017, arXiv:1610.00291.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyrogen.primitives import NamedPyroModule
from pyrogen.models.base import Facade
from pyrogen.models.util import check_data, data_plate
from pyrogen.nn.mlp import _check_event_shape, _check_int_sequence, _check_positive_int


def _check_image_shape(data_shape: object, num_stages: int) -> tuple[int, int, int]:
    shape = _check_int_sequence(data_shape, "data_shape", allow_empty=False)
    smallest = 2 ** (num_stages - 1)
    if len(shape) != 3 or min(shape[1:]) < smallest:
        raise ValueError(
            f"data_shape must be (C, H, W) with H, W >= {smallest} for {num_stages} "
            f"convolutional stages, got {tuple(shape)}"
        )
    return shape  # type: ignore[return-value]


class Classifier(nn.Module):
    r"""
    A small VGG-like convolutional classifier whose intermediate activations are features.

    Shapes: ``forward`` maps ``(..., C, H, W)`` to logits ``(..., num_classes)``;
    :meth:`features` returns the named activations with the same leading dimensions.

    Example::

        >>> net = Classifier((1, 28, 28), num_classes=10)
        >>> net.LAYERS
        ('relu1', 'relu2', 'relu3', 'penultimate')
        >>> {k: v.shape for k, v in net.features(torch.rand(4, 1, 28, 28), ["relu2"]).items()}
        {'relu2': torch.Size([4, 64, 14, 14])}

    :param tuple data_shape: ``(C, H, W)``, any number of channels, ``H, W >= 2**(S-1)``.
    :param int num_classes: the number of classes, at least 2.
    :param tuple channels: the output channels of the :math:`S` convolutional stages.
    :param int hidden: the width of the penultimate (embedding) layer.
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (32, 64, 128),
        hidden: int = 128,
    ) -> None:
        channels = _check_int_sequence(channels, "channels", allow_empty=False)
        data_shape = _check_image_shape(data_shape, len(channels))
        num_classes = _check_positive_int(num_classes, "num_classes")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        hidden = _check_positive_int(hidden, "hidden")
        super().__init__()
        self.data_shape = data_shape
        self.num_classes = num_classes
        self.config: dict[str, Any] = dict(
            data_shape=list(data_shape), num_classes=num_classes,
            channels=list(channels), hidden=hidden,
        )
        #: the names :meth:`features` accepts, shallowest first.
        self.LAYERS = tuple(f"relu{s + 1}" for s in range(len(channels))) + ("penultimate",)
        stages = []
        for s, (c_in, c_out) in enumerate(zip((data_shape[0],) + channels[:-1], channels)):
            pool = [nn.MaxPool2d(2)] if s > 0 else []
            stages.append(nn.Sequential(*pool, nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()))
        stages.append(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(2),
                nn.Flatten(),
                nn.Linear(4 * channels[-1], hidden),
                nn.ReLU(),
            )
        )
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(hidden, num_classes)

    def _check_layers(self, layers: Sequence[str] | None) -> tuple[str, ...]:
        if layers is None:
            return self.LAYERS
        if isinstance(layers, str) or not all(name in self.LAYERS for name in layers):
            raise ValueError(
                f"layers must be a sequence of names from {self.LAYERS}, got {layers!r}"
            )
        return tuple(layers)

    def features(
        self, x: torch.Tensor, layers: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """
        The activations of ``x`` at ``layers`` (all of :attr:`LAYERS` by default), computed
        only as deep as the deepest one asked for.

        :param torch.Tensor x: images ``(..., C, H, W)``.
        :param layers: names from :attr:`LAYERS`.
        :returns: a dict from layer name to activation ``(..., *feature_shape)``.
        """
        _check_event_shape(x, self.data_shape, "x")
        layers = self._check_layers(layers)
        batch_shape = x.shape[:-3]
        h = x.reshape(-1, *self.data_shape)
        deepest = max(self.LAYERS.index(name) for name in layers)
        out = {}
        for name, stage in zip(self.LAYERS[: deepest + 1], self.stages):
            h = stage(h)
            if name in layers:
                out[name] = h.reshape(*batch_shape, *h.shape[1:])
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r"""The logits :math:`f_\theta(x)`, ``(..., num_classes)``, of images ``x``
        ``(..., C, H, W)``: the linear head on the ``"penultimate"`` features."""
        return self.head(self.features(x, ["penultimate"])["penultimate"])

    @torch.no_grad()
    def embed(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """The penultimate features ``(N, hidden)`` of images ``(N, C, H, W)``, in chunks,
        for :func:`~pyrogen.metrics.frechet_distance_features`."""
        check_data(x, self.data_shape)
        return torch.cat(
            [self.features(b, ["penultimate"])["penultimate"] for b in x.split(int(batch_size))]
        )


class ClassifierModel(NamedPyroModule):
    r"""
    The conditional model :math:`y_n \mid x_n \sim \mathrm{Categorical}(\mathrm{softmax}
    (f_\theta(x_n)))` over a minibatch, inside the ``"data"`` plate.

    With :class:`ClassifierGuide` (there is no latent variable) ``Trace_ELBO`` is exactly the
    summed cross-entropy, scaled by ``num_data / batch``.

    :param Classifier net: the network :math:`f_\theta`.
    """

    def __init__(self, net: Classifier) -> None:
        super().__init__()
        self.net = net

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None, *, num_data: int | None = None
    ) -> torch.Tensor:
        """
        :param x: images ``(batch, *data_shape)``.
        :param y: their labels, an ``int64`` tensor ``(batch,)``, or ``None`` to draw labels.
        :param int num_data: the size of the data set the minibatch comes from.
        :returns: the labels (observed or drawn).
        """
        batch_size = check_data(x, self.net.data_shape)
        if y is not None and (y.shape != (batch_size,) or y.dtype != torch.int64):
            raise ValueError(
                f"y must be an int64 tensor of shape ({batch_size},), got dtype {y.dtype} "
                f"and shape {tuple(y.shape)}"
            )
        with data_plate(batch_size, num_data, x.device):
            return pyro.sample("y", dist.Categorical(logits=self.net(x)), obs=y)


class ClassifierGuide(NamedPyroModule):
    """The empty guide of :class:`ClassifierModel`: it has no latent variable to infer."""

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None, *, num_data: int | None = None
    ) -> None:
        """No sample site: takes the model's arguments, ignores them and returns ``None``."""
        return None


class ImageClassifier(Facade):
    r"""
    A :class:`Classifier` with its Pyro model/guide pair, trainable by any SVI loop::

        clf = ImageClassifier((1, 28, 28), num_classes=10)
        svi = SVI(clf.model, clf.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
        for x, y in batches:
            svi.step(x, y, num_data=60000)
        clf.accuracy(x_test, y_test)

    Afterwards it serves as the fixed feature network of
    :class:`~pyrogen.models.dfcvae.DFCVAE` and as the embedding of
    :func:`~pyrogen.metrics.frechet_distance_features`. ``clf.config`` holds the constructor
    arguments, so a checkpoint can rebuild it.

    :param tuple data_shape: ``(C, H, W)``.
    :param int num_classes: the number of classes.
    :param tuple channels: the channels of the convolutional stages.
    :param int hidden: the width of the penultimate layer.
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (32, 64, 128),
        hidden: int = 128,
    ) -> None:
        super().__init__()
        self.net = Classifier(data_shape, num_classes, channels, hidden)
        self.config: dict[str, Any] = dict(self.net.config)
        self.model = ClassifierModel(self.net)
        self.guide = ClassifierGuide()

    @property
    def data_shape(self) -> tuple[int, ...]:
        return self.net.data_shape

    @property
    def LAYERS(self) -> tuple[str, ...]:
        return self.net.LAYERS

    fit = "supervised"
    #: the trainer checks that the data have labels
    needs_labels = True

    def inputs(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The positional arguments ``(x, y)`` of model and guide for a :class:`~pyrogen.data.Batch`."""
        if batch.y is None:
            raise ValueError("a classifier trains on labelled data, but the data have no labels")
        return batch.x, batch.y

    def features(
        self, x: torch.Tensor, layers: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """See :meth:`Classifier.features`."""
        return self.net.features(x, layers)

    def embed(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """See :meth:`Classifier.embed`."""
        return self.net.embed(x, batch_size)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """The most probable class of each image ``(N, C, H, W)``, as ``int64`` ``(N,)``."""
        check_data(x, self.data_shape)
        return torch.cat([self.net(b).argmax(-1) for b in x.split(int(batch_size))])

    @torch.no_grad()
    def accuracy(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
        """The fraction of images ``x`` whose predicted class is the label ``y``."""
        if y.shape != x.shape[:1]:
            raise ValueError(f"y must have shape ({x.shape[0]},) to match x, got {tuple(y.shape)}")
        return (self.predict(x, batch_size) == y).double().mean().item()
