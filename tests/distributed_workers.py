"""Worker functions for the multi-process tests (spawned processes import them by name)."""

import functools
import multiprocessing
import os
import sys

import pyro
import torch
import torch.distributed as dist


def _exits_hard(fn):
    """End a spawned rank by ``os._exit(0)`` once ``fn`` returned (see ``pyrogen.cli.console``:
    torch 2.13's gloo backend sometimes aborts the interpreter's shutdown after the work is
    done); called in the test's own process, ``fn`` just returns."""
    @functools.wraps(fn)
    def run(*args):
        fn(*args)
        if multiprocessing.parent_process() is not None:  # a spawned rank
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    return run


def _join(rank, world_size, init_file):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)


def _model(name, seed):
    from pyrogen.models import GAN, VAE, ImageClassifier

    torch.manual_seed(seed)
    pyro.set_rng_seed(seed)
    if name == "vae":
        return VAE((1, 8, 8), latent_dim=4, hidden=(32,))
    if name == "classifier":
        return ImageClassifier((1, 8, 8), num_classes=10, channels=(4, 8), hidden=16)
    return GAN((1, 8, 8), latent_dim=4, arch="mlp", hidden=(32,), generator_loss="regularised")


@_exits_hard
def train(rank, world_size, init_file, name, batch_size, out_dir, init_seed_per_rank):
    """Train ``name`` on 300 digits for 2 epochs; save the final state and the divergence."""
    from pyrogen.data import load_dataset
    from pyrogen.train import TrainConfig, Trainer
    from pyrogen.train.distributed import max_divergence

    if world_size > 1:
        _join(rank, world_size, init_file)
    try:
        # different initial weights per rank: the trainer must broadcast rank 0's
        model = _model(name, 100 + rank if init_seed_per_rank else 100)
        binarize = "dynamic" if name == "vae" else "none"
        data = load_dataset("digits", limit=300, binarize=binarize)
        steps = {"g_steps": 2} if name == "gan" else {}
        config = TrainConfig(model=name, epochs=2, batch_size=batch_size, device="cpu",
                             lr=1e-3, validation_size=None, **steps)
        trainer = Trainer(model, data, config, None, progress=False)
        trainer.fit()
        divergence = max_divergence(trainer.model)
        torch.save({"state": trainer.model.state_dict(), "divergence": divergence,
                    "history": trainer.history}, os.path.join(out_dir, f"{name}-{world_size}-{rank}.pt"))
    finally:
        if world_size > 1:
            dist.destroy_process_group()


@_exits_hard
def svi(rank, world_size, init_file, out_dir):
    """A user's own SVI loop with DistributedOptim: the ranks stay in sync."""
    from pyro.infer import SVI, Trace_ELBO
    from pyro.optim import Adam

    from pyrogen.data import load_dataset
    from pyrogen.train.distributed import DistributedOptim, max_divergence

    _join(rank, world_size, init_file)
    try:
        pyro.clear_param_store()
        vae = _model("vae", 7 + rank)  # different weights: DistributedOptim copies rank 0's
        data = load_dataset("digits", limit=300, binarize="dynamic")
        svi = SVI(vae.model, vae.guide, DistributedOptim(Adam({"lr": 1e-3})), Trace_ELBO())
        pyro.set_rng_seed(rank)
        for batch in data.train.batches(25, shuffle=True, epoch=0, rank=rank, world_size=world_size):
            svi.step(batch.x, num_data=len(data.train))
        torch.save({"divergence": max_divergence(vae)}, os.path.join(out_dir, f"svi-{rank}.pt"))
    finally:
        dist.destroy_process_group()
