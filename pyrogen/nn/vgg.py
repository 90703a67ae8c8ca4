r"""
The first three blocks of VGG19 (Simonyan and Zisserman 2015), up to ``relu3_1``, loaded
from torchvision weights a user has on disk: the feature network of the DFC-VAE paper.

pyrogen never downloads weights. Save them once where torchvision can reach the internet::

    import torch, torchvision
    torch.save(torchvision.models.vgg19(weights="IMAGENET1K_V1").state_dict(), "vgg19.pth")

and pass the file to :func:`load_vgg19_features` (or ``pyrogen train dfcvae --features
vgg19.pth``). Only the convolutions up to ``conv3_1`` are read; the file is loaded with
``torch.load(weights_only=True)``, so loading it never runs code from it.

Inputs are images in :math:`[0, 1]`, grey or RGB (grey is repeated to three channels), and
are normalised with ImageNet's channel means and standard deviations, as torchvision's
weights expect.

**References**

[1] K. Simonyan, A. Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: torchvision's ``vgg19().features`` index of each convolution read here
_CONVS = {"conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10}
_SHAPES = {"conv1_1": (64, 3), "conv1_2": (64, 64), "conv2_1": (128, 64), "conv2_2": (128, 128),
           "conv3_1": (256, 128)}


class VGG19Features(nn.Module):
    r"""
    VGG19's ``relu1_1``, ``relu2_1`` and ``relu3_1`` activations:

    .. math::
        \mathrm{relu1\_1} = \sigma(c_{11}(\bar x)), \quad
        \mathrm{relu2\_1} = \sigma(c_{21}(\mathrm{pool}(\sigma(c_{12}(\mathrm{relu1\_1}))))), \quad
        \mathrm{relu3\_1} = \sigma(c_{31}(\mathrm{pool}(\sigma(c_{22}(\mathrm{relu2\_1}))))),

    with :math:`\bar x` the ImageNet-normalised input and 3x3 convolutions of padding 1.
    Built with random weights; :func:`load_vgg19_features` fills them from a file.
    """

    LAYERS = ("relu1_1", "relu2_1", "relu3_1")

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleDict(
            {name: nn.Conv2d(c_in, c_out, 3, padding=1) for name, (c_out, c_in) in _SHAPES.items()}
        )
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1))
        self.config: dict[str, Any] = {"kind": "vgg19"}

    def features(self, x: torch.Tensor, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """The activations at ``layers`` (default all of :attr:`LAYERS`) of images ``(N, C, H, W)``."""
        layers = tuple(self.LAYERS if layers is None else layers)
        unknown = [name for name in layers if name not in self.LAYERS]
        if unknown:
            raise ValueError(f"layers must be among {self.LAYERS}, got {unknown}")
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"x must be images (N, 1 or 3, H, W), got shape {tuple(x.shape)}")
        if min(x.shape[-2:]) < 4:
            raise ValueError(f"VGG features need images of at least 4x4 pixels, got {tuple(x.shape[-2:])}")
        h = (x.expand(-1, 3, -1, -1) - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        h = out["relu1_1"] = F.relu(self.convs["conv1_1"](h))
        if "relu2_1" in layers or "relu3_1" in layers:
            h = F.max_pool2d(F.relu(self.convs["conv1_2"](h)), 2)
            h = out["relu2_1"] = F.relu(self.convs["conv2_1"](h))
        if "relu3_1" in layers:
            h = F.max_pool2d(F.relu(self.convs["conv2_2"](h)), 2)
            out["relu3_1"] = F.relu(self.convs["conv3_1"](h))
        return {name: out[name] for name in layers}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        r"""The list :math:`[\mathrm{relu1\_1}, \mathrm{relu2\_1}, \mathrm{relu3\_1}]` (the
        order of :attr:`LAYERS`) for images ``x`` ``(N, C, H, W)`` in :math:`[0, 1]`, ``C`` 1
        or 3: full, half and quarter resolution, 64, 128 and 256 channels."""
        feats = self.features(x)
        return [feats[name] for name in self.LAYERS]


def load_vgg19_features(path: str | os.PathLike) -> VGG19Features:
    """
    :class:`VGG19Features` with the weights of a torchvision VGG19 state dict saved at
    ``path`` (of the whole model, keys ``features.N.weight``, or of ``vgg19().features``,
    keys ``N.weight``).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"VGG19 weights file {str(path)!r} does not exist; save "
                                "torchvision.models.vgg19(weights=...).state_dict() there first")
    from pyrogen.files import load_tensors

    try:
        state = load_tensors(path)
    except ValueError as e:
        raise ValueError(f"cannot load VGG19 weights {e}; they must be a state dict of tensors "
                         "saved with torch.save") from e
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    prefix = "features." if any(k.startswith("features.") for k in state) else ""
    net = VGG19Features()
    with torch.no_grad():
        for name, index in _CONVS.items():
            for part in ("weight", "bias"):
                key = f"{prefix}{index}.{part}"
                target = getattr(net.convs[name], part)
                if key not in state:
                    raise ValueError(f"{path} is not a torchvision VGG19 state dict: key {key!r} "
                                     "is missing")
                if tuple(state[key].shape) != tuple(target.shape):
                    raise ValueError(f"{path}: {key} has shape {tuple(state[key].shape)}, VGG19's "
                                     f"{name} has {tuple(target.shape)}")
                target.copy_(state[key])
    return net


__all__ = ["VGG19Features", "load_vgg19_features"]
