"""Data-parallel training over torch.distributed: gloo, 2 processes on this machine."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.multiprocessing as mp

import distributed_workers as workers
from pyrogen.train import read_metrics

#: several processes each: run with `pytest -m distributed`
pytestmark = pytest.mark.distributed


def _spawn(fn, world_size, tmp_path, *args):
    init = tmp_path / "rendezvous"
    mp.spawn(fn, args=(world_size, str(init), *args), nprocs=world_size, join=True)


def _load(tmp_path, name, world_size, rank):
    return torch.load(tmp_path / f"{name}-{world_size}-{rank}.pt", weights_only=True)


@pytest.mark.parametrize("name", ["vae", "gan"])
def test_parameters_start_and_stay_identical_across_ranks(tmp_path, name):
    _spawn(workers.train, 2, tmp_path, name, 25, str(tmp_path), True)
    a, b = _load(tmp_path, name, 2, 0), _load(tmp_path, name, 2, 1)
    assert a["divergence"] == 0.0 and b["divergence"] == 0.0
    for key in a["state"]:  # every player's parameters and buffers
        assert torch.equal(a["state"][key], b["state"][key]), key
    assert a["history"][-1]["train_loss"] == b["history"][-1]["train_loss"]  # averaged over ranks


def test_two_ranks_of_batch_b_equal_one_process_of_batch_2b(tmp_path):
    # the classifier draws no noise: the same examples give the same gradients, which proves
    # the gradient averaging and the plates' full-data scaling together
    _spawn(workers.train, 2, tmp_path, "classifier", 25, str(tmp_path), False)
    workers.train(0, 1, None, "classifier", 50, str(tmp_path), False)
    two, one = _load(tmp_path, "classifier", 2, 0), _load(tmp_path, "classifier", 1, 0)
    for key, value in one["state"].items():
        assert torch.allclose(two["state"][key], value, atol=1e-6, rtol=1e-5), key
    for r1, r2 in zip(one["history"], two["history"]):
        assert r2["train_loss"] == pytest.approx(r1["train_loss"], rel=1e-5)


def test_a_users_svi_loop_with_distributed_optim(tmp_path):
    _spawn(workers.svi, 2, tmp_path, str(tmp_path))
    for rank in (0, 1):
        assert torch.load(tmp_path / f"svi-{rank}.pt", weights_only=True)["divergence"] == 0.0


def _torchrun(*argv, cwd, timeout=240):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", *map(str, argv)]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_torchrun_cli_end_to_end_and_resume(tmp_path):
    common = ["--limit", "300", "--device", "cpu", "--no-progress", "--hidden", "32", "--latent-dim", "4"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    done = _torchrun("-m", "pyrogen", "train", "vae", *common, "--epochs", "3", "--out", whole, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count('"run"') == 1  # rank 0 speaks for the job
    stopped = _torchrun("-m", "pyrogen", "train", "vae", *common, "--epochs", "1", "--out", part,
                        cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    resumed = _torchrun("-m", "pyrogen", "train", "vae", "--resume", part, "--epochs", "3", "--device", "cpu",
                        "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert [r["epoch"] for r in read_metrics(part)] == [1, 2, 3]
    a = torch.load(whole / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(part / "checkpoints" / "last.pt", weights_only=True)
    assert len(a["rng_ranks"]) == 2
    for key in a["model_state"]:
        assert torch.equal(a["model_state"][key], b["model_state"][key]), key


def test_a_failing_rank_ends_the_job_with_its_message(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(textwrap.dedent('''
        import torch.distributed as dist
        from pyrogen.data import load_dataset
        from pyrogen.models import VAE
        from pyrogen.train import TrainConfig, Trainer
        from pyrogen.train.distributed import init_distributed

        init_distributed("cpu")

        def explode(trainer, record):
            if dist.get_rank() == 1:
                raise RuntimeError("rank 1 failed on purpose")

        data = load_dataset("digits", limit=300, binarize="dynamic")
        config = TrainConfig(epochs=50, batch_size=25, device="cpu")
        Trainer(VAE((1, 8, 8), latent_dim=2, hidden=(16,)), data, config, None, progress=False,
                callbacks=[explode]).fit()
    '''))
    done = _torchrun(script, cwd=tmp_path, timeout=180)
    assert done.returncode != 0
    assert "rank 1 failed on purpose" in done.stderr + done.stdout
