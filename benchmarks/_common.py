"""
Helpers shared by the benchmark scripts: the network of Burda et al. (2016),
MNIST loading, peak memory, a median, and a per-method slot of Pyro's param store.

Run the scripts from the repository root (``python benchmarks/<name>.py``);
Python then puts ``benchmarks/`` on the path and ``import _common`` works.
"""

from __future__ import annotations

import contextlib
import dataclasses
import resource
import statistics
from collections.abc import Iterator
from pathlib import Path

import pyro
import torch

from pyrogen.data import DataSplits, Split, load_dataset
from pyrogen.models import VAE

#: The VAE of Burda et al. (2016): 784-200-200-50 tanh encoder, mirrored decoder, Bernoulli pixels.
BURDA_VAE = dict(data_shape=(1, 28, 28), latent_dim=50, hidden=(200, 200), activation="tanh",
                 likelihood="bernoulli")


def burda_vae(seed: int | None = None) -> VAE:
    """A freshly initialised Burda VAE; with ``seed``, the same weights on every call."""
    if seed is not None:
        torch.manual_seed(seed)
    return VAE(**BURDA_VAE)


def load_mnist(data_dir: str | Path, limit: int | None = None, seed: int = 0) -> DataSplits:
    """MNIST with dynamic binarisation and no validation split (all 60,000 images train)."""
    return load_dataset("mnist", data_dir, binarize="dynamic", validation_size=0, seed=seed,
                        limit=limit)


def truncate_train(data: DataSplits, size: int) -> DataSplits:
    """``data`` with its training split cut to its first ``size`` images."""
    train = data.train
    labels = None if train.labels is None else train.labels[:size]
    return dataclasses.replace(data, train=Split(train.images[:size], labels, train.binarize))


def peak_rss_mb() -> float:
    """The peak resident memory of this process so far, in MiB (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(values: list[float]) -> float:
    return float(statistics.median(values))


class ParamStoreSlot:
    """One method's own contents of Pyro's global parameter store, swapped in for its turn."""

    def __init__(self) -> None:
        self.state: dict | None = None

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        store = pyro.get_param_store()
        store.clear()
        if self.state is not None:
            store.set_state(self.state)
        try:
            yield
        finally:
            self.state = store.get_state()
            store.clear()
