r"""
In-memory data splits and their minibatch iterator.

A :class:`Split` keeps a whole split as one ``float32`` tensor of shape ``(N, C, H, W)`` with
values in :math:`[0, 1]` and iterates over minibatches by plain tensor indexing on the tensors'
own device: no :class:`torch.utils.data.DataLoader`, no per-example Python. On a GPU the data
is moved once (:meth:`Split.to`) and an epoch costs a few kernel launches per batch.

**Binarisation.** Binary likelihoods (Bernoulli decoders) need binary data, and the
literature binarises MNIST in two ways whose numbers are *not comparable*:

* ``"dynamic"``: every time an image is served it is redrawn as
  :math:`x \sim \mathrm{Bernoulli}(\text{intensity})`, so the model sees fresh draws each
  epoch (a mild regulariser); test log-likelihoods are estimated on draws too and come out
  lower (better) than static ones.
* ``"static"``: one draw made once, at load time (or published, as Larochelle's binarised
  MNIST), and served unchanged; the standard for reporting test NLL on binary MNIST.
* ``"none"``: the grey levels themselves, for Gaussian, continuous-Bernoulli or logistic
  likelihoods.

Always state which convention a reported figure used.

**Reproducibility.** Every random choice in :meth:`Split.batches` comes from a private
:class:`torch.Generator` seeded from ``(seed, epoch)`` (the permutation, identical on every
rank) or ``(seed, epoch, rank)`` (the dynamic draws); the global torch RNG is never touched,
so a run resumed at epoch ``e`` sees exactly the batches it would have seen.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, NamedTuple

import numpy as np
import torch

__all__ = ["BINARIZATIONS", "Batch", "DataSplits", "Split", "derive_seed"]

#: Accepted values of ``binarize``: grey levels, a fresh Bernoulli draw per batch, one fixed draw.
BINARIZATIONS = ("none", "dynamic", "static")

_PERMUTATION, _DYNAMIC, _STATIC = 0, 1, 2  # stream tags, so that no two uses share a seed


def derive_seed(*keys: int) -> int:
    """
    Mix non-negative integers into one 63-bit seed for a :class:`torch.Generator`.

    Uses :class:`numpy.random.SeedSequence`, so nearby keys such as ``(seed, epoch)`` and
    ``(seed, epoch + 1)`` give unrelated streams and distinct key tuples do not collide.
    """
    state = np.random.SeedSequence(list(keys)).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _check_non_negative(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


class Batch(NamedTuple):
    """One minibatch: data ``x``, labels ``y`` (``None`` if unlabelled) and their ``index`` in the split."""

    x: torch.Tensor
    y: torch.Tensor | None
    index: torch.Tensor


def _check_values(images: torch.Tensor, labels: torch.Tensor | None, binarize: str) -> None:
    """Refuse, in words, images that are not finite grey levels in [0, 1] (or 0/1 for a
    statically binarised split) and negative labels."""
    if not len(images):
        return
    finite = torch.isfinite(images)
    if not finite.all():
        n = int((~finite).sum())
        raise ValueError(f"images hold {n} NaN or infinite value(s) (first at image "
                         f"{int((~finite).flatten(1).any(1).nonzero()[0])}); pixels must be "
                         "finite grey levels in [0, 1]")
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        hint = " (pixels of 0-255: divide by 255)" if high > 1 and high <= 255 and low >= 0 else ""
        raise ValueError(f"images hold values in [{low:g}, {high:g}]; pixels must be grey levels "
                         f"in [0, 1]{hint}")
    if binarize == "static" and not ((images == 0) | (images == 1)).all():
        raise ValueError("the split is labelled statically binarised (binarize='static'), but its "
                         "images hold grey levels, not only 0 and 1")
    if labels is not None and len(labels) and int(labels.min()) < 0:
        raise ValueError(f"labels must be class indices >= 0, got {int(labels.min())}")


@dataclasses.dataclass(repr=False)
class Split:
    """
    One split (train, validation or test) of a data set, held in memory.

    :param torch.Tensor images: ``float32`` tensor of shape ``(N, C, H, W)``, values in [0, 1].
        For ``binarize="static"`` they are already 0/1.
    :param labels: ``int64`` tensor of shape ``(N,)``, or ``None``.
    :type labels: torch.Tensor or None
    :param str binarize: how :meth:`batches` serves the images, one of :data:`BINARIZATIONS`.

    Example::

        for epoch in range(num_epochs):
            for x, y, index in splits.train.batches(100, shuffle=True, epoch=epoch, seed=seed):
                svi.step(x)
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    binarize: str = "none"

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.dim() != 4:
            got = tuple(self.images.shape) if isinstance(self.images, torch.Tensor) else type(self.images).__name__
            raise ValueError(f"images must be a tensor of shape (N, C, H, W), got {got}")
        if self.images.dtype != torch.float32:
            raise ValueError(f"images must be float32 with values in [0, 1], got dtype {self.images.dtype}")
        if self.labels is not None:
            if self.labels.shape != (len(self.images),) or self.labels.dtype != torch.int64:
                raise ValueError(
                    f"labels must be an int64 tensor of shape ({len(self.images)},), got dtype "
                    f"{self.labels.dtype} and shape {tuple(self.labels.shape)}"
                )
            if self.labels.device != self.images.device:
                raise ValueError(f"labels are on {self.labels.device} but images on {self.images.device}")
        if self.binarize not in BINARIZATIONS:
            raise ValueError(f"binarize must be one of {BINARIZATIONS}, got {self.binarize!r}")
        _check_values(self.images, self.labels, self.binarize)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        labelled = "labelled" if self.labels is not None else "unlabelled"
        return (
            f"Split(size={len(self)}, shape={tuple(self.images.shape[1:])}, binarize={self.binarize!r}, "
            f"{labelled}, device={self.images.device})"
        )

    @property
    def num_dims(self) -> int:
        """Number of values per example, ``C * H * W``."""
        return int(np.prod(self.images.shape[1:]))

    @property
    def device(self) -> torch.device:
        """The device the tensors live on."""
        return self.images.device

    def head(self, n: int) -> Split:
        """The first ``n`` points of this split."""
        labels = None if self.labels is None else self.labels[:n]
        return Split(self.images[:n], labels, self.binarize)

    def to(self, device: torch.device | str) -> Split:
        """Return a copy of this split with images and labels on ``device``."""
        labels = None if self.labels is None else self.labels.to(device)
        return Split(self.images.to(device), labels, self.binarize)

    def _order(self, shuffle: bool, drop_last: bool, epoch: int, seed: int, rank: int, world_size: int) -> torch.Tensor:
        n = len(self)
        if shuffle:
            generator = torch.Generator().manual_seed(derive_seed(_PERMUTATION, seed, epoch))
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        if world_size > 1:
            # torch.utils.data.DistributedSampler semantics: every rank gets the same count.
            if drop_last:
                order = order[: n - n % world_size]
            elif n % world_size and n:
                total = -(-n // world_size) * world_size
                order = order.repeat(-(-total // n))[:total]
            order = order[rank::world_size]
        return order.to(self.images.device)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        epoch: int = 0,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> Iterator[Batch]:
        """
        Iterate over minibatches of this split.

        The order is a permutation drawn from ``(seed, epoch)`` alone when ``shuffle`` is true,
        else ``0..N-1``. For distributed training it is then padded by repeating from its start
        (or, with ``drop_last``, truncated) to a multiple of ``world_size``, and rank ``r`` takes
        positions ``r, r + world_size, ...``, as :class:`~torch.utils.data.DistributedSampler`
        does, so the ranks' shards are disjoint (up to the padding) and cover the split.

        With ``binarize="dynamic"`` every ``x`` is a fresh Bernoulli draw from a generator
        seeded by ``(seed, epoch, rank)``: new each epoch, different on each rank, reproducible.
        Unshuffled evaluation with the defaults is therefore reproducible too.

        :param int batch_size: examples per batch, at least 1.
        :param bool shuffle: permute the examples.
        :param bool drop_last: drop a final batch smaller than ``batch_size`` (and, when
            sharding, the examples beyond a multiple of ``world_size`` instead of padding).
        :param int epoch: the epoch number, a non-negative integer; changes the permutation and
            the dynamic draws.
        :param int seed: the run's seed, a non-negative integer.
        :param int rank: this process's rank, ``0 <= rank < world_size``.
        :param int world_size: the number of processes sharing the data.
        :returns: an iterator of :class:`Batch` ``(x, y, index)``, all on the split's device,
            ``index`` holding the ``int64`` positions of the examples in the split.
        :raises ValueError: on an invalid argument, before any work.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if isinstance(world_size, bool) or not isinstance(world_size, (int, np.integer)) or world_size < 1:
            raise ValueError(f"world_size must be an integer >= 1, got {world_size!r}")
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be an integer with 0 <= rank < world_size={world_size}, got {rank!r}")
        _check_non_negative("epoch", epoch)
        _check_non_negative("seed", seed)
        return self._batches(int(batch_size), shuffle, drop_last, int(epoch), int(seed), int(rank), int(world_size))

    def _batches(
        self, batch_size: int, shuffle: bool, drop_last: bool, epoch: int, seed: int, rank: int, world_size: int
    ) -> Iterator[Batch]:
        order = self._order(shuffle, drop_last, epoch, seed, rank, world_size)
        generator = None
        if self.binarize == "dynamic":
            generator = torch.Generator(device=self.images.device)
            generator.manual_seed(derive_seed(_DYNAMIC, seed, epoch, rank))
        stop = len(order) - len(order) % batch_size if drop_last else len(order)
        for start in range(0, stop, batch_size):
            index = order[start : start + batch_size]
            x = self.images.index_select(0, index)
            if generator is not None:
                x = torch.bernoulli(x, generator=generator)
            y = None if self.labels is None else self.labels.index_select(0, index)
            yield Batch(x, y, index)


@dataclasses.dataclass(repr=False)
class DataSplits:
    """
    A data set loaded into train, validation and test :class:`Split` objects.

    :param str name: the data set's name (one of :data:`~pyrogen.data.DATASETS`).
    :param Split train: training split.
    :param Split valid: validation split (possibly empty).
    :param Split test: test split.
    :param str binarize: the binarisation every split serves (see the module docstring).
    :param tuple shape: ``(C, H, W)`` of one example.
    :param num_classes: number of label classes, ``None`` if unlabelled.
    :type num_classes: int or None
    :param class_names: the class names, where the data set has any (image folders).
    :type class_names: tuple or None
    """

    name: str
    train: Split
    valid: Split
    test: Split
    binarize: str
    shape: tuple[int, int, int]
    num_classes: int | None
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("train", "valid", "test"):
            labels = getattr(self, name).labels
            if self.num_classes is not None and labels is not None and len(labels):
                top = int(labels.max())
                if top >= self.num_classes:
                    raise ValueError(f"the {name} split has label {top}, but the data set has "
                                     f"{self.num_classes} classes (labels 0 to {self.num_classes - 1})")

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.describe()["sizes"].items())
        return f"DataSplits({self.name!r}, {sizes}, shape={self.shape}, binarize={self.binarize!r})"

    def to(self, device: torch.device | str) -> DataSplits:
        """Return a copy with every split's tensors on ``device``."""
        return dataclasses.replace(
            self, train=self.train.to(device), valid=self.valid.to(device), test=self.test.to(device)
        )

    def describe(self) -> dict:
        """A JSON-serialisable summary: name, split sizes, shape, binarisation, number of classes."""
        return {
            "name": self.name,
            "sizes": {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)},
            "shape": list(self.shape),
            "binarize": self.binarize,
            "num_classes": self.num_classes,
        }
