r"""
Data-parallel training over ``torch.distributed``, as launched by ``torchrun``.

``torchrun --nproc_per_node=4 -m pyrogen train vae ...`` starts four processes with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in their environment;
:func:`init_distributed` joins them into one process group (NCCL on CUDA, one GPU per local
rank; gloo on CPU), and the trainers then

* give each rank its own shard of every epoch's shuffled data (the semantics of
  ``DistributedSampler`` with ``set_epoch``; dynamic binarisation draws differ per rank),
  while the ``"data"`` plates keep the full data size, so each rank's loss is an unbiased
  estimate of the whole data set's;
* start every rank from rank 0's parameters and buffers (:func:`broadcast_module`), and
  average the gradients across ranks before every optimiser step (of every player of an
  adversarial model), so the parameters stay identical; batch norm's running statistics,
  which each rank estimates on its own minibatches, are averaged at the end of every epoch
  (:func:`average_buffers`);
* draw their sampling noise from a per-rank stream (seed + rank), and save every rank's
  random state in the checkpoints, so ``--resume`` under ``torchrun`` continues exactly;
* write files (checkpoints, metrics, TensorBoard, pictures) on rank 0 only.

A rank that raises ends its process with an error, and ``torchrun`` then stops the other
ranks: the job ends with the failing rank's message rather than hanging in a collective.

A user's own ``SVI`` script gets the same with one call: wrap the Pyro optimiser in
:class:`DistributedOptim`, shard the data by rank, and keep ``num_data`` the full size::

    init_distributed("cpu")
    svi = SVI(vae.model, vae.guide, DistributedOptim(Adam({"lr": 1e-3})), Trace_ELBO())
    for batch in data.train.batches(100, shuffle=True, epoch=epoch, rank=rank(), world_size=world_size()):
        svi.step(batch.x, num_data=len(data.train))
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pyro
import torch
import torch.distributed as dist
from pyro.optim import PyroOptim
from torch import nn

from pyrogen.train.checkpoint import get_rng_state


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """The number of processes training together (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def launched_by_torchrun() -> bool:
    """Whether the environment describes a process group (``torchrun`` sets ``RANK`` and
    ``WORLD_SIZE``)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: str | torch.device | None = None, backend: str | None = None,
                     timeout_minutes: float = 30.0) -> bool:
    """
    Join the process group that ``torchrun`` describes in the environment; do nothing when
    the process was not launched by it, or the group exists already.

    On CUDA each process uses the GPU of its ``LOCAL_RANK`` (``torch.cuda.set_device``), so
    ``device="cuda"`` means that GPU, and the backend is NCCL; on CPU it is gloo.

    :param device: the device the run trains on.
    :param str backend: override the backend.
    :param float timeout_minutes: how long a collective may wait for the other ranks.
    :returns: whether this process is one of several.
    """
    if not dist.is_available():
        return False
    if dist.is_initialized():
        return dist.get_world_size() > 1
    if not launched_by_torchrun():
        return False
    cuda = device is not None and torch.device(device).type == "cuda"
    if cuda:
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for, but no CUDA GPU is available")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend or ("nccl" if cuda else "gloo"),
                            timeout=timedelta(minutes=timeout_minutes))
    return dist.get_world_size() > 1


def shutdown(wait: bool = False) -> None:
    """Leave the process group, if any; with ``wait``, first wait for every rank to get
    here (after a run that ended normally: rank 0 may still be writing files, and a rank
    that tears its connections down while another is still at work can abort it). If
    another rank failed, the barrier waits until the launcher ends the job (``torchrun``
    does at once) or the process group's timeout."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Overwrite every parameter and buffer of ``module`` with rank ``src``'s, in place."""
    if world_size() == 1:
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src)


def average_buffers(module: nn.Module) -> None:
    """Make every rank's buffers equal: floating-point buffers (batch norm's running
    statistics, which each rank estimates from its own minibatches) become their mean over the
    ranks, the others (counters) rank 0's. The trainers call it at the end of every epoch."""
    size = world_size()
    if size == 1:
        return
    with torch.no_grad():
        for buffer in module.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer /= size
            else:
                dist.broadcast(buffer, 0)


def any_rank(flag: bool, device: torch.device | str = "cpu") -> bool:
    """Whether ``flag`` holds on any rank (itself in one process): one all-reduce, so that
    every rank takes the same branch, e.g. all roll back when one rank's loss diverged."""
    if world_size() == 1:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def average_gradients(params: list[torch.Tensor]) -> None:
    """Replace each parameter's gradient by its mean over the ranks (one all-reduce of the
    concatenated gradients). Every rank must pass the same parameters in the same order; a
    missing gradient counts as zero."""
    size = world_size()
    if size == 1 or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= size
    offset = 0
    for p, g in zip(params, grads):
        p.grad = flat[offset : offset + g.numel()].view_as(g).clone()
        offset += g.numel()


def max_divergence(module: nn.Module) -> float:
    """The largest absolute difference of any parameter or buffer between this rank and rank
    0 (0.0 when the ranks are in sync, or not distributed); every rank must call it."""
    if world_size() == 1:
        return 0.0
    worst = torch.zeros((), dtype=torch.float64)
    for tensor in module.state_dict().values():
        if not tensor.is_floating_point():
            continue
        reference = tensor.detach().clone()
        dist.broadcast(reference, 0)
        worst = torch.maximum(worst, (tensor.detach() - reference).abs().max().double().cpu())
    worst = worst.to(next(iter(module.state_dict().values())).device)
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return float(worst)


def gather_rng_states() -> list[dict[str, Any]]:
    """Every rank's random-number state (for checkpoints); every rank must call it."""
    state = get_rng_state()
    if world_size() == 1:
        return [state]
    states: list[Any] = [None] * world_size()
    dist.all_gather_object(states, state)
    return states


class DistributedOptim(PyroOptim):
    """
    A Pyro optimiser for data-parallel ``SVI``: before each step it averages the gradients
    across ranks and, at the first step, copies rank 0's parameter values to every rank, then
    steps the wrapped optimiser. Parameters are ordered by their names in the param store, so
    every rank reduces them in the same order.

    :param PyroOptim optim: e.g. ``pyro.optim.Adam({"lr": 1e-3})``.
    """

    def __init__(self, optim: PyroOptim) -> None:
        if not isinstance(optim, PyroOptim):
            raise TypeError(f"optim must be a pyro.optim optimiser, got {type(optim).__name__}")
        self.optim = optim
        self._synced: set[str] = set()

    def __call__(self, params: Any, *args: Any, **kwargs: Any) -> None:
        store = pyro.get_param_store()
        named = sorted(((store.param_name(p), p) for p in params), key=lambda item: item[0])
        fresh = [p for name, p in named if name not in self._synced]
        if fresh and world_size() > 1:
            with torch.no_grad():
                for p in fresh:
                    dist.broadcast(p.data, 0)
        self._synced.update(name for name, _ in named)
        average_gradients([p for _, p in named])
        self.optim([p for _, p in named], *args, **kwargs)

    def get_state(self) -> dict:
        """The wrapped Pyro optimiser's state (``PyroOptim.get_state``)."""
        return self.optim.get_state()

    def set_state(self, state_dict: dict) -> None:
        """Set the wrapped Pyro optimiser's state (``PyroOptim.set_state``)."""
        self.optim.set_state(state_dict)

    def save(self, filename: str) -> None:
        """Save the wrapped Pyro optimiser's state to ``filename`` (``PyroOptim.save``)."""
        self.optim.save(filename)

    def load(self, filename: str, map_location: Any = None) -> None:
        """Load the wrapped Pyro optimiser's state from ``filename`` (``PyroOptim.load``)."""
        self.optim.load(filename, map_location=map_location)


__all__ = [
    "DistributedOptim",
    "any_rank",
    "average_buffers",
    "average_gradients",
    "broadcast_module",
    "gather_rng_states",
    "init_distributed",
    "launched_by_torchrun",
    "max_divergence",
    "rank",
    "shutdown",
    "world_size",
]
