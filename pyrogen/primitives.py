"""
Pyro modelling primitives that every pyrogen model/guide pair and estimator shares: the
``"data"`` plate with minibatch scaling, the KL weight, and the checks of a batch's shape.

They sit below :mod:`pyrogen.infer` and :mod:`pyrogen.models` (as ``pyro.primitives`` sits
below ``pyro.infer``), so that both can use them without importing each other.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Iterator

import pyro
import pyro.poutine as poutine
import torch
from pyro.nn import PyroModule


def data_plate(batch_size: int, num_data: int | None, device: torch.device) -> pyro.plate:
    r"""
    The ``"data"`` plate over a minibatch of ``batch_size`` points drawn from a
    data set of ``num_data`` points.

    Log-densities inside it are scaled by ``num_data / batch_size``, so that a
    minibatch ELBO is an unbiased estimate of the full data set's. The minibatch
    is passed in already sliced, so the plate's subsample indices index nothing;
    they are given as ``arange(batch_size)`` because drawing them (a
    ``randperm(num_data)`` per step, about 1.6 ms for 60,000 points) would cost
    more than the rest of a small VAE's step.

    :param int batch_size: the number of data points in the minibatch.
    :param int num_data: the size of the whole data set; ``None`` means the
        minibatch is the whole data set (no scaling).
    :param torch.device device: where the plate's index tensor lives.
    """
    if num_data is None:
        num_data = batch_size
    if num_data < batch_size:
        raise ValueError(
            f"num_data must be at least the minibatch size {batch_size}, got {num_data}"
        )
    subsample = torch.arange(batch_size, device=device)
    return pyro.plate("data", num_data, subsample=subsample, device=device, dim=-1)


@contextlib.contextmanager
def beta_scale(beta: float | torch.Tensor) -> Iterator[None]:
    r"""
    Scale the log-densities of the latent site by ``beta``.

    Used around the latent site in *both* model and guide, so the ELBO's KL term
    is multiplied by :math:`\beta` (the :math:`\beta`-VAE, and KL warm-up).
    ``beta == 1`` adds no handler; Pyro requires ``beta > 0``.
    """
    if isinstance(beta, (int, float)):
        if not beta > 0:
            raise ValueError(
                f"beta must be > 0 (poutine.scale rejects 0; use a small floor such "
                f"as 1e-3 for warm-up), got {beta}"
            )
        if beta == 1:
            yield
            return
    with poutine.scale(scale=beta):
        yield


def check_data(x: torch.Tensor, data_shape: tuple[int, ...], name: str = "x") -> int:
    """Check that ``x`` is a batch of data points of shape ``data_shape``; return its size."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape[1:]) != tuple(data_shape):
        raise ValueError(
            f"{name} must have shape (batch, {', '.join(map(str, data_shape))}), "
            f"got {tuple(x.shape)}"
        )
    return x.shape[0]


def batch_size_of(x: torch.Tensor | None, num_samples: int | None, data_shape: tuple[int, ...],
                  owner: str) -> int:
    """The size of a model's ``"data"`` plate: the batch of ``x``, or ``num_samples`` points to
    generate when ``x`` is None (one of the two is required)."""
    if x is None:
        if num_samples is None:
            raise ValueError(f"{owner} needs either x or num_samples")
        return int(num_samples)
    return check_data(x, data_shape)


#: one counter for every model built in this process
_INSTANCES = itertools.count(1)


def instance_name(kind: str) -> str:
    """A name prefix for Pyro's parameter store that no other model of this process has:
    ``kind`` in snake case and a serial number (``"vae_model_3"``)."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", kind).lower()
    return f"{snake}_{next(_INSTANCES)}"


class NamedPyroModule(PyroModule):
    """
    A top-level ``PyroModule`` of a pyrogen model (a model, guide or discriminator) whose
    parameters live in Pyro's global parameter store under a prefix of its own
    (:func:`instance_name`), so two models built in one session, of the same class or not,
    never share or shadow each other's parameters: each ``SVI`` trains its own model without
    ``pyro.clear_param_store()``. A ``NamedPyroModule`` nested in another ``PyroModule``
    takes its name from its parent, as any ``PyroModule``. The weights' own names (the
    ``state_dict``) are unchanged.
    """

    def __init__(self) -> None:
        super().__init__(name=instance_name(type(self).__name__))


__all__ = ["NamedPyroModule", "batch_size_of", "beta_scale", "check_data", "data_plate",
           "instance_name"]
