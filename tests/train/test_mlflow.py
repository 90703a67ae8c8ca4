"""MLflow tracking (the optional extra) against a real local store: parameters, every epoch's
figures, the pictures, curves and best checkpoint; --resume continues the same MLflow run."""

import json

import pytest

from clitools import last_json, run

mlflow = pytest.importorskip("mlflow")

SMALL = ("--dataset", "digits", "--limit", "200", "--device", "cpu", "--no-progress")


def test_a_run_is_logged_to_a_local_store_and_resumed_into_the_same_run(tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    store, out = tmp_path / "mlflow", tmp_path / "vae"
    code, stdout, err = run(capsys, "train", "vae", *SMALL, "--epochs", "2", "--mlflow", store,
                            "--out", out)
    assert code == 0, err
    saved = json.loads((out / "mlflow.json").read_text())
    client = MlflowClient(tracking_uri=f"sqlite:///{store.resolve() / 'mlflow.db'}")
    logged = client.get_run(saved["run_id"])
    assert logged.info.status == "FINISHED" and logged.info.run_name == "vae"
    params = logged.data.params
    assert params["train.model"] == "vae" and params["train.dataset"] == "digits"
    assert params["train.epochs"] == "2" and json.loads(params["model_config.hidden"]) == [256]
    losses = client.get_metric_history(saved["run_id"], "valid_loss")
    assert [m.step for m in losses] == [1, 2]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m.value for m in losses] == pytest.approx([r["valid_loss"] for r in metrics])
    artifacts = {a.path for a in client.list_artifacts(saved["run_id"])}
    assert {"samples.png", "reconstructions.png", "curves.png", "metrics.jsonl", "checkpoints"} <= artifacts
    assert [a.path for a in client.list_artifacts(saved["run_id"], "checkpoints")] == ["checkpoints/best.pt"]
    # the artifacts live in the store's folder, not in the working directory
    assert list((store / "artifacts").rglob("best.pt"))

    code, stdout, err = run(capsys, "train", "vae", "--resume", out, "--epochs", "3", "--no-progress")
    assert code == 0, err
    assert json.loads((out / "mlflow.json").read_text())["run_id"] == saved["run_id"]
    assert [m.step for m in client.get_metric_history(saved["run_id"], "valid_loss")] == [1, 2, 3]
    assert client.get_run(saved["run_id"]).info.status == "FINISHED"
    assert len(client.search_runs([logged.info.experiment_id])) == 1
    assert last_json(stdout)["epochs"] == 3
