"""kill -9 at random moments, then resume until done: the run ends bit-identical to one never
stopped (`pytest -m slow -k kill`, a few minutes). Every kill lands somewhere: in start-up, an
epoch, a checkpoint's write, a picture's; the run folder must always take --resume, or a fresh
start when no checkpoint was written yet."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from pyrogen.train import load_checkpoint

pytestmark = pytest.mark.slow

COMMANDS = {
    "vae": ["train", "vae", "--dataset", "digits", "--limit", "400", "--epochs", "6"],
    "gan": ["train", "gan", "--dataset", "digits", "--limit", "400", "--epochs", "4"],
}


#: how many runs are killed (at a random moment, so some land before the first checkpoint)
KILLS = 8


def _pyrogen(args, env):
    return subprocess.Popen([sys.executable, "-m", "pyrogen", *args, "--device", "cpu", "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def _finished(folder, epochs):
    path = folder / "checkpoints" / "last.pt"
    return path.is_file() and load_checkpoint(path)["epoch"] == epochs


@pytest.mark.parametrize("family", sorted(COMMANDS))
def test_random_kills_resume_to_the_uninterrupted_run(family, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = COMMANDS[family]
    epochs = int(command[-1])
    whole = tmp_path / "whole"
    assert _pyrogen([*command, "--out", str(whole)], env).wait() == 0
    rng = random.Random(family)
    folder, kills = tmp_path / "killed", 0
    for attempt in range(KILLS + 1):  # KILLS tries killed at a random moment, then one left to end
        if _finished(folder, epochs):
            break
        has_checkpoint = (folder / "checkpoints" / "last.pt").is_file()
        args = ["train", family, "--resume", str(folder), "--epochs", str(epochs)] if has_checkpoint \
            else [*command, "--out", str(folder)]
        process = _pyrogen(args, env)
        if attempt < KILLS:
            time.sleep(rng.uniform(1.5, 6.0))
        if attempt < KILLS and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        _, err = process.communicate()
        assert process.returncode in (0, -signal.SIGKILL), err.decode()
    assert _finished(folder, epochs) and kills >= 3
    a = load_checkpoint(whole / "checkpoints" / "last.pt")
    b = load_checkpoint(folder / "checkpoints" / "last.pt")
    for name, tensor in a["model_state"].items():
        assert torch.equal(tensor, b["model_state"][name]), name
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    best = load_checkpoint(folder / "checkpoints" / "best.pt")
    assert best["epoch"] <= b["epoch"] and not [p for p in (folder / "checkpoints").iterdir()
                                                 if p.name.endswith(".tmp")]
