"""Bad input, as a new user types it: every case ends with a non-zero exit and one line naming
what is wrong (argparse's usage errors: its usage line and one error line), never a traceback,
and before any work is done."""

import json
import os
import pickle

import pytest
import torch

from clitools import run

from pyrogen.cli import main

SMALL = ("--dataset", "digits", "--limit", "200", "--epochs", "1", "--device", "cpu", "--no-progress")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A trained VAE run and a classifier run, shared by the cases."""
    root = tmp_path_factory.mktemp("runs")
    for family in ("vae", "classifier"):
        assert main(["train", family, "--out", str(root / family), *SMALL]) == 0
    return root


class Hostile:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _edit_checkpoint(path, edit):
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)


def _copy(runs, tmp_path, name="vae"):
    import shutil

    target = tmp_path / name
    shutil.copytree(runs / name, target)
    return target


def case_data_dir_is_a_file(runs, tmp):
    (tmp / "afile").write_text("x")
    return ["train", "vae", "--dataset", "mnist", "--data-dir", tmp / "afile"], "is not a folder"


def case_checkpoint_without_weights(runs, tmp):
    run_dir = _copy(runs, tmp)
    _edit_checkpoint(run_dir / "checkpoints" / "best.pt", lambda s: s.pop("model_state"))
    return ["evaluate", run_dir], "is incomplete: it has no model_state"


def case_checkpoint_weights_do_not_fit_its_config(runs, tmp):
    run_dir = _copy(runs, tmp)
    _edit_checkpoint(run_dir / "checkpoints" / "best.pt",
                     lambda s: s["model_config"].update(hidden=[77]))
    return ["evaluate", run_dir], "its weights do not fit the model its configuration describes: size mismatch"


def case_out_is_a_file(runs, tmp):
    (tmp / "afile").write_text("x")
    return ["train", "vae", "--out", tmp / "afile", *SMALL], "is a file; give the name of a run folder"


def case_sample_out_is_a_folder(runs, tmp):
    return ["sample", runs / "vae", "--out", tmp], "is a folder, not a file"


def case_reconstruct_out_is_a_folder(runs, tmp):
    return ["reconstruct", runs / "vae", "--out", tmp], "is a folder, not a file"


def case_huge_hidden_layer(runs, tmp):
    return (["train", "vae", "--hidden", "2000000000", "--out", tmp / "r", *SMALL],
            "out of memory (it asked for")


def case_huge_number_of_particles(runs, tmp):
    return (["train", "vae", "--num-particles", "1000000000", "--out", tmp / "r", *SMALL],
            "out of memory (it asked for")


def case_hostile_features_file(runs, tmp):
    path = tmp / "vgg.pt"
    path.write_bytes(pickle.dumps(Hostile()))
    return (["train", "dfcvae", "--features", path, "--out", tmp / "r", *SMALL],
            "not a file of tensors saved by torch.save")


def case_hostile_checkpoint(runs, tmp):
    path = tmp / "best.pt"
    path.write_bytes(pickle.dumps(Hostile()))
    return ["evaluate", runs / "vae", "--checkpoint", path], "not a file of tensors saved by torch.save"


def case_junk_checkpoint(runs, tmp):
    path = tmp / "best.pt"
    path.write_bytes(b"not a checkpoint")
    return ["sample", runs / "vae", "--checkpoint", path, "--out", tmp / "s.png"], "not a file of tensors saved by torch.save"


def case_importance_samples_beyond_a_day(runs, tmp):
    return (["evaluate", runs / "vae", "--iw-samples", "1000000000000"],
            "hours on this machine")


def case_valid_split_of_a_run_without_one(runs, tmp):
    assert main(["train", "vae", "--out", str(tmp / "nov"), "--validation-size", "0", *SMALL]) == 0
    return ["evaluate", tmp / "nov", "--split", "valid", "--iw-samples", "2"], "has no valid split"


def case_corrupt_line_in_metrics(runs, tmp):
    run_dir = _copy(runs, tmp)
    lines = (run_dir / "metrics.jsonl").read_text()
    (run_dir / "metrics.jsonl").write_text("{broken\n" + lines)
    return ["diagnose", run_dir, "--num-points", "10", "--num-samples", "20", "--num-predictive", "10",
            "--out", tmp / "d"], "metrics.jsonl, line 1: not a JSON record"


def case_resume_a_run_of_another_family(runs, tmp):
    return ["train", "gan", "--resume", runs / "vae"], "trained a vae, not a gan"


def case_resume_a_folder_without_checkpoint(runs, tmp):
    (tmp / "empty").mkdir()
    return ["train", "vae", "--resume", tmp / "empty"], "did the first epoch finish?"


def case_negative_lr_min(runs, tmp):
    return ["train", "vae", "--lr-min=-1", *SMALL], "--lr-min"


def case_unknown_option(runs, tmp):
    return ["train", "vae", "--hiden", "3", *SMALL], "--hiden"


def case_lr_of_zero(runs, tmp):
    return ["train", "vae", "--lr", "0", *SMALL], "--lr"


def case_label_of_a_missing_class(runs, tmp):
    return ["sample", runs / "vae", "--label", "3", "--out", tmp / "s.png"], "--label needs a label-conditioned model"


def case_unwritable_run_folder(runs, tmp):
    blocker = tmp / "blocker"
    blocker.write_text("x")  # a file where a folder should be: no process can write below it
    return ["train", "vae", "--out", blocker / "run", *SMALL], "blocker"


def case_evaluate_a_missing_run(runs, tmp):
    return ["evaluate", tmp / "nowhere"], "does not exist"


def case_features_of_another_family(runs, tmp):
    return (["evaluate", runs / "vae", "--features", runs / "vae", "--iw-samples", "2"],
            "must be a `pyrogen train classifier` run")


def case_negative_divergence_band(runs, tmp):
    return ["train", "vae", "--divergence-band", "-1", *SMALL], "--divergence-band"


def case_evaluate_cannot_write_its_result(runs, tmp):
    run_dir = _copy(runs, tmp)
    (run_dir / "evaluation.json").mkdir()
    return ["evaluate", run_dir, "--iw-samples", "2"], "evaluation.json: is a folder, not a file"


def case_diagnose_out_below_a_file(runs, tmp):
    (tmp / "blocker").write_text("x")
    return (["diagnose", runs / "vae", "--out", tmp / "blocker" / "diag"],
            "blocker: is a file, so nothing can be written below it")


def case_encode_out_below_a_file(runs, tmp):
    (tmp / "blocker").write_text("x")
    return ["encode", runs / "vae", "--out", tmp / "blocker" / "codes"], "blocker: is a file"


def case_resume_a_run_folder_that_cannot_be_written(runs, tmp):
    run_dir = _copy(runs, tmp)
    if os.geteuid() == 0:  # root writes anywhere: a folder where the run's log is rewritten
        (run_dir / "metrics.jsonl").unlink()
        (run_dir / "metrics.jsonl").mkdir()
        return ["train", "vae", "--resume", run_dir, "--epochs", "2", "--no-progress"], "metrics.jsonl"
    os.chmod(run_dir, 0o555)
    return ["train", "vae", "--resume", run_dir, "--epochs", "2", "--no-progress"], "no permission"


def case_evaluate_a_read_only_run(runs, tmp):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    run_dir = _copy(runs, tmp)
    os.chmod(run_dir, 0o555)
    return ["evaluate", run_dir, "--iw-samples", "2"], "cannot be written (no permission)"


CASES = {name[len("case_"):]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gives_one_clear_line(name, runs, tmp_path, capsys):
    argv, expected = CASES[name](runs, tmp_path)
    capsys.readouterr()
    try:
        code, out, err = run(capsys, *argv)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
        out, err = capsys.readouterr()
    # the log's own first line (threads) is allowed where the error comes from the first step
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("pyrogen: training on")]
    assert code not in (0, None), (name, out, err)
    assert "Traceback" not in err, err
    assert expected in err, err
    usage = lines[0].startswith("usage:")
    assert len(lines) == (1 + sum(line.startswith(" ") for line in lines[1:-1]) + 1 if usage else 1), err
    assert "error:" in lines[-1], err
    assert not out.strip() or "error" not in out, out


def test_evaluation_json_and_pictures_are_written_atomically(runs, tmp_path, capsys):
    """evaluation.json replaces the old file whole; a picture's temporary file has a unique
    name, so two writers cannot collide, and none is left behind."""
    run_dir = _copy(runs, tmp_path)
    (run_dir / "evaluation.json").write_text("old")
    code, out, err = run(capsys, "evaluate", run_dir, "--iw-samples", "2")
    assert code == 0, err
    assert json.loads((run_dir / "evaluation.json").read_text())["iw_samples"] == 2
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    code, out, err = run(capsys, "sample", run_dir, "--out", tmp_path / "s.png")
    assert code == 0 and (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
