"""Neural networks of pyrogen: plain :class:`torch.nn.Module` s that the models wrap.

* :class:`MLP`, :class:`MLPEncoder`, :class:`MLPDecoder`: fully connected networks;
* :class:`ConvTrunk`, :class:`ConvEncoder`, :class:`ConvDecoder`: DCGAN-style networks for
  28x28 and 64x64 images;
* :class:`DataDiscriminator`, :class:`CodeDiscriminator`, :class:`JointDiscriminator`:
  logits for adversarial models (on ``x``, on ``z``, on pairs ``(x, z)``);
* :func:`build_encoder`, :func:`build_decoder`: build either by name (``"mlp"``, ``"conv"``);
* :func:`glorot_init_`, :func:`dcgan_init_`: initialisations, for ``net.apply``.

Encoders map ``(..., *data_shape)`` to ``(loc, scale)``, each ``(..., latent_dim)`` with
``scale > 0``; decoders map ``(..., latent_dim)`` to unnormalised ``(..., *data_shape)``.
"""

from __future__ import annotations

from .conv import SUPPORTED_SIZES, ConvDecoder, ConvEncoder, ConvTrunk, conv_trunk, dcgan_init_
from .discriminator import DISCRIMINATOR_ARCHS, CodeDiscriminator, DataDiscriminator, JointDiscriminator
from .factory import ARCHITECTURES, build_decoder, build_encoder
from .mlp import ACTIVATIONS, MLP, LeakyReLU, MLPDecoder, MLPEncoder, glorot_init_
from .vgg import VGG19Features, load_vgg19_features

__all__ = [
    "ACTIVATIONS",
    "ARCHITECTURES",
    "CodeDiscriminator",
    "DISCRIMINATOR_ARCHS",
    "DataDiscriminator",
    "JointDiscriminator",
    "SUPPORTED_SIZES",
    "ConvDecoder",
    "ConvEncoder",
    "ConvTrunk",
    "LeakyReLU",
    "MLP",
    "MLPDecoder",
    "MLPEncoder",
    "VGG19Features",
    "build_decoder",
    "build_encoder",
    "conv_trunk",
    "dcgan_init_",
    "glorot_init_",
    "load_vgg19_features",
]
