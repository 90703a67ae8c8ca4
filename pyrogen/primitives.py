"""
Pyro modelling primitives that every pyrogen model/guide pair and estimator shares: the
``"data"`` plate with minibatch scaling, the KL weight, and the checks of a batch's shape.

They sit below :mod:`pyrogen.infer` and :mod:`pyrogen.models` (as ``pyro.primitives`` sits
below ``pyro.infer``), so that both can use them without importing each other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pyro
import pyro.poutine as poutine
import torch


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


__all__ = ["batch_size_of", "beta_scale", "check_data", "data_plate"]
