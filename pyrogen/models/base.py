r"""
The interface every pyrogen facade declares: what the trainer, the family registry
(:mod:`pyrogen.families`) and the command line may ask of a model without knowing which
family it is.

A facade owns a Pyro model/guide pair (``.model``, ``.guide``) and says how it is fitted
(:attr:`Facade.fit`), which inputs a minibatch gives its model and guide
(:meth:`Facade.inputs`), which data it accepts, and which pictures a training run draws of
it. Every attribute has a default here, so a facade overrides only what differs.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

#: how a facade is fitted, read by :class:`pyrogen.train.Trainer` to choose its step:
#: ``"svi"`` (a Pyro ELBO of model and guide), ``"supervised"`` (the same loop on a model with
#: no latent variable), ``"adversarial"`` (alternating players, each with its own loss) or
#: ``"em"`` (expectation-maximisation with the exact posterior)
FIT_KINDS = ("svi", "supervised", "adversarial", "em")


class Facade(nn.Module):
    """
    Base class of pyrogen's facades (:class:`~pyrogen.models.VAE`, :class:`~pyrogen.models.GAN`,
    ...): the declared interface in place of probing a model for attributes.

    A subclass sets ``self.config`` (its constructor's arguments, so a checkpoint can
    rebuild it) and ``self.model``/``self.guide``, and overrides what differs from the
    defaults below.
    """

    #: one of :data:`FIT_KINDS`
    fit: ClassVar[str] = "svi"
    #: whether :meth:`encode` and :meth:`reconstruct` read ``x`` alone (``pyrogen reconstruct``,
    #: ``pyrogen encode`` and the encoder metrics)
    has_encoder: ClassVar[bool] = False
    #: whether model and guide take class labels (the data must have them)
    needs_labels: bool = False

    config: dict[str, Any]

    @property
    def data_shape(self) -> tuple[int, ...]:
        """The shape of one data point the model reads."""
        return tuple(self.config["data_shape"])

    @property
    def latent_dim(self) -> int | None:
        """The dimension of :math:`z`, or None for a model without a continuous latent."""
        return None

    @property
    def num_classes(self) -> int | None:
        """The number of class labels the model conditions on, or None."""
        return self.config.get("num_classes")

    @property
    def needs_binary_data(self) -> bool:
        """Whether the likelihood is Bernoulli, so grey-level data would be scored wrongly."""
        return False

    def accepts(self, data_shape: tuple[int, ...]) -> bool:
        """Whether the model reads data points of ``data_shape`` (through :meth:`inputs`)."""
        return tuple(data_shape) == tuple(self.data_shape)

    def inputs(self, batch: Any) -> tuple[torch.Tensor, ...]:
        """The positional arguments of model and guide for a :class:`~pyrogen.data.Batch`."""
        return (batch.x,)

    def scored_dimensions(self, num_dims: int) -> int:
        """How many of a data point's ``num_dims`` dimensions the likelihood scores (bits
        per dimension divide by it)."""
        return num_dims

    def baseline_pair(self) -> tuple[nn.Module, nn.Module] | None:
        """A model/guide pair to fit before the main objective (a pre-phase), or None."""
        return None

    def baseline_done(self) -> bool:
        """Whether the pre-phase of :meth:`baseline_pair` has run (saved with the weights)."""
        return True

    def training_pictures(self, z: torch.Tensor | None, x: torch.Tensor,
                          labels: torch.Tensor | None, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The pictures a training run writes after each epoch (name -> images), from fixed
        latent draws ``z`` (None without a latent) and a few test points: ``x`` and
        ``labels`` as the model reads them (one fixed binarisation draw), ``images`` the same
        points' grey levels, as a person sees them."""
        return {}


__all__ = ["FIT_KINDS", "Facade"]
