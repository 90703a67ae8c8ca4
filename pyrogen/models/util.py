"""Facade helpers shared by pyrogen's models; the plates and scales live in
:mod:`pyrogen.primitives` and are re-exported here."""

from __future__ import annotations

from typing import Any

import torch

from pyrogen.models.base import Facade
from pyrogen.primitives import batch_size_of, beta_scale, check_data, data_plate


class ShapedFacade(Facade):
    """A facade whose ``.model`` knows its ``data_shape`` and ``latent_dim`` and which
    decodes a latent ``z`` into an image (``decode``)."""

    @property
    def data_shape(self) -> tuple[int, ...]:
        """The shape of one data point the model reads (the ``.model``'s ``data_shape``)."""
        return self.model.data_shape

    @property
    def latent_dim(self) -> int:
        """The dimension of the latent :math:`z` (the ``.model``'s ``latent_dim``)."""
        return self.model.latent_dim

    @torch.no_grad()
    def training_pictures(self, z: torch.Tensor | None, x: torch.Tensor,
                          labels: torch.Tensor | None, images: torch.Tensor) -> dict[str, Any]:
        """Decoded samples from the fixed draws ``z`` and, for a facade with an encoder,
        the grey-level ``images`` above their reconstructions."""
        pictures = {"samples": self.decode(z)}
        if self.has_encoder and len(images):
            pictures["reconstructions"] = torch.cat([images, self.reconstruct(images)])
        return pictures


class ReconstructMixin:
    """``reconstruct(x)``: ``decode`` at the location of ``encode(x)``."""

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        r""":meth:`decode` of the encoder's location :math:`\mu(x)`."""
        loc, _ = self.encode(x)
        return self.decode(loc)


__all__ = ["ReconstructMixin", "ShapedFacade", "batch_size_of", "beta_scale", "check_data", "data_plate"]
