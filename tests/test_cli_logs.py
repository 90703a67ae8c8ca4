"""What a training log reads like: one plain line per epoch (no progress-bar frames when
standard error is not a terminal), the threads used, a closing summary; ``pyrogen runs``
lists run folders, ``pyrogen plot`` and every finished run draw the loss curves."""

import subprocess
import sys

from PIL import Image

from clitools import last_json, run

SMALL = ("--dataset", "digits", "--limit", "200", "--device", "cpu")


def test_a_log_file_gets_one_line_per_epoch_and_a_summary(tmp_path):
    """A run whose standard error is a file (not a terminal) writes no bar frames."""
    out = tmp_path / "vae"
    done = subprocess.run([sys.executable, "-m", "pyrogen", "train", "vae", *SMALL, "--epochs", "3",
                           "--out", str(out)], capture_output=True, text=True, check=True)
    lines = done.stderr.splitlines()
    assert "\r" not in done.stderr, "progress-bar frames in a log file"
    assert lines[0] == "pyrogen: training on cpu with 1 thread (the default; --threads N to change)"
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    for line in epochs:
        assert "train_loss" in line and "valid_loss" in line and "lr " in line and "images/s" in line
    summary = lines[-1]
    assert summary.startswith(f"pyrogen: done: {out}: vae on digits, 3/3 epochs, best epoch ")
    assert "best.pt" in summary and "curves.png" in summary
    assert len(lines) == 5, lines  # the threads line, three epochs, the summary
    assert last_json(done.stdout)["epochs"] == 3
    with Image.open(out / "curves.png") as picture:
        assert picture.size[0] > 300


def test_runs_lists_run_folders_and_plot_draws_their_curves(tmp_path, capsys):
    for family, epochs in (("vae", 2), ("gan", 1)):
        code, out, err = run(capsys, "train", family, *SMALL, "--epochs", epochs, "--no-progress",
                             "--out", tmp_path / "runs" / family)
        assert code == 0, err
    code, out, err = run(capsys, "evaluate", tmp_path / "runs" / "vae", "--iw-samples", "5",
                         "--device", "cpu")
    assert code == 0, err
    code, out, err = run(capsys, "runs", tmp_path / "runs")
    assert code == 0, err
    listing = last_json(out)["runs"]
    assert [(r["family"], r["dataset"], r["epochs_done"], r["epochs"]) for r in listing] == \
        [("gan", "digits", 1, 1), ("vae", "digits", 2, 2)]
    vae = listing[1]
    assert vae["best_epoch"] in (1, 2) and "best_valid_loss" in vae and "eval_nll" in vae
    assert out.splitlines()[1].startswith(f"{tmp_path / 'runs' / 'vae'}: vae on digits, 2/2 epochs, best epoch")
    assert "evaluated nll" in out.splitlines()[1]
    assert "curves.png" in vae["pictures"]

    code, out, err = run(capsys, "plot", tmp_path / "runs" / "gan", "--out", tmp_path / "gan.png")
    assert code == 0 and last_json(out)["out"] == str(tmp_path / "gan.png"), err
    with Image.open(tmp_path / "gan.png") as picture:
        assert picture.size[0] > 300

    code, out, err = run(capsys, "plot", tmp_path)
    assert code == 1 and "holds no metrics.jsonl" in err
    code, out, err = run(capsys, "runs", tmp_path / "nowhere")
    assert code == 1 and "is not a folder" in err
