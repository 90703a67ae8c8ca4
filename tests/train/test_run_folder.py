"""Run folders that cannot get stuck: a lock against a second writer, restart after a kill
before the first checkpoint, stale temporary files cleaned, best.pt never behind last.pt,
metrics.jsonl read past a line cut short."""

import json

import pytest
import torch

from clitools import last_json, run

from pyrogen.cli import _error_message
from pyrogen.data import load_dataset
from pyrogen.models import VAE
from pyrogen.train import TrainConfig, Trainer, load_checkpoint, read_metrics
from pyrogen.train.logging import RunFolderBusy

SMALL = ("--dataset", "digits", "--limit", "200", "--epochs", "1", "--device", "cpu", "--no-progress")


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", binarize="dynamic", limit=200)


def trainer(data, run_dir, epochs=2):
    torch.manual_seed(0)
    return Trainer(VAE(data.shape, latent_dim=2, hidden=(16,)), data,
                   TrainConfig(epochs=epochs, batch_size=50, device="cpu"), run_dir, progress=False)


def test_a_second_writer_is_refused_while_the_first_holds_the_folder(data, tmp_path):
    first = trainer(data, tmp_path / "run")
    first.logger.lock()  # as a running (or resuming) trainer holds it
    second = trainer(data, tmp_path / "run")
    with pytest.raises(RunFolderBusy, match=r"is being written by another process \(pid \d+\)"):
        second.fit()
    first.logger.unlock()
    second.fit()  # free again once the first is done
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1, 2]


def test_a_second_resume_of_a_folder_in_use_is_refused(data, tmp_path):
    trainer(data, tmp_path / "run", epochs=1).fit()
    first = trainer(data, tmp_path / "run", epochs=3)
    first.resume()
    second = trainer(data, tmp_path / "run", epochs=3)
    with pytest.raises(RunFolderBusy):
        second.resume()
    first.fit()
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1, 2, 3]


def test_a_run_killed_before_its_first_checkpoint_starts_again(tmp_path, capsys):
    """What a kill during the first checkpoint's write leaves: config.json, a temporary file,
    no last.pt. --resume says to start again; a fresh --out of the folder does, cleaning up."""
    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    stale = folder / "checkpoints" / ".last.pt.k2j3.tmp"
    stale.write_bytes(b"partial")
    code, out, err = run(capsys, "train", "vae", "--resume", folder)
    assert code == 1 and f"starts again with --out {folder}" in err
    code, out, err = run(capsys, "train", "vae", "--out", folder, *SMALL)
    assert code == 0, err
    assert not stale.exists() and (folder / "checkpoints" / "last.pt").is_file()
    with pytest.raises(SystemExit) as usage:  # now it holds work: never overwritten
        run(capsys, "train", "vae", "--out", folder, *SMALL)
    assert usage.value.code == 2 and "already holds a run" in capsys.readouterr().err


def test_best_is_written_before_last(data, tmp_path, monkeypatch):
    """A kill between the two writes of an improving epoch must leave last.pt behind (the epoch
    is redone on resume), never best.pt behind last.pt."""
    import pyrogen.train.trainer as module

    order = []
    save = module.save_checkpoint
    monkeypatch.setattr(module, "save_checkpoint", lambda state, path: (order.append(path.name), save(state, path)))
    trainer(data, tmp_path / "run", epochs=1).fit()
    assert order == ["best.pt", "last.pt"]


def test_metrics_reader_skips_a_line_cut_short_and_names_a_corrupt_one(tmp_path):
    good = json.dumps({"epoch": 1, "train_loss": 3.0})
    (tmp_path / "metrics.jsonl").write_text(good + "\n" + '{"epoch": 2, "tra')
    assert read_metrics(tmp_path) == [{"epoch": 1, "train_loss": 3.0}]
    (tmp_path / "metrics.jsonl").write_text(good + "\n[1, 2\n" + good + "\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2: not a JSON record"):
        read_metrics(tmp_path)


def test_resume_after_a_cut_metrics_line_rewrites_it(data, tmp_path):
    trainer(data, tmp_path / "run", epochs=1).fit()
    with open(tmp_path / "run" / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "tr')  # killed while appending epoch 2
    resumed = trainer(data, tmp_path / "run", epochs=2)
    resumed.resume()
    resumed.fit()
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1, 2]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == 2


@pytest.mark.parametrize("error,expected", [
    (PermissionError(13, "Permission denied", "ro/run/config.json"), "ro/run/config.json: Permission denied"),
    (OSError(28, "No space left on device", "run/checkpoints/last.pt"),
     "run/checkpoints/last.pt: No space left on device"),
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1073741824 bytes."),
     "out of memory (it asked for 1 GiB)"),
    (ValueError("first line\nsecond line"), "first line"),
])
def test_error_messages_are_one_line_naming_the_path(error, expected):
    message = _error_message(error)
    assert message.startswith(expected) and "\n" not in message


def test_an_internal_error_keeps_its_traceback():
    assert _error_message(RuntimeError("a bug in pyrogen")) is None


def test_the_cli_summary_names_the_run(tmp_path, capsys):
    code, out, err = run(capsys, "train", "vae", "--out", tmp_path / "r", *SMALL)
    assert code == 0 and last_json(out)["run"] == str(tmp_path / "r")
