"""
Experiment tracking in MLflow, beside TensorBoard (the optional extra
``pip install "pyrogen-vi[mlflow]"``): with ``--mlflow STORE`` (``TrainConfig.mlflow``) a run
logs its parameters, every epoch's figures, and at its end its pictures, loss curves and best
checkpoint to an MLflow run.

``STORE`` is a folder (a local store, no server: ``STORE/mlflow.db``, a SQLite database, and
``STORE/artifacts``; MLflow no longer accepts new plain-file stores) or any MLflow tracking URI
(``sqlite:///...``, ``http://host:5000``, ``databricks``). Runs go to the experiment
``pyrogen``; each is named after its run folder, and ``RUN/mlflow.json`` keeps its id, so
``--resume`` continues the same MLflow run. See it with ``mlflow ui --backend-store-uri
sqlite:///STORE/mlflow.db``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from pyrogen.files import atomic_write

#: the experiment every pyrogen run is logged under
EXPERIMENT = "pyrogen"
#: the file in a run folder that remembers its MLflow run
RUN_FILE = "mlflow.json"
#: what the end of a run logs as artifacts, when the run folder has it
ARTIFACTS = ("samples.png", "reconstructions.png", "curves.png", "config.json", "metrics.jsonl",
             "checkpoints/best.pt")


def require_mlflow() -> Any:
    """The ``mlflow`` module, or a ``ValueError`` saying how to install it."""
    try:
        import mlflow
        import mlflow.tracking
    except ImportError as e:
        raise ValueError('--mlflow needs MLflow, an optional extra: pip install "pyrogen-vi[mlflow]" '
                         f"({e})") from None
    return mlflow


def tracking_uri(store: str) -> tuple[str, Path | None]:
    """The tracking URI of ``store`` and, for a local folder, where its artifacts go."""
    if "://" in store or store == "databricks":
        return store, None
    folder = Path(store).expanduser().resolve()
    return f"sqlite:///{folder / 'mlflow.db'}", folder / "artifacts"


def _flat(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)


class MLflowTracker:
    """
    One pyrogen run as one MLflow run, through :class:`mlflow.tracking.MlflowClient` (no
    global state: two trainers in one process log to their own runs).

    :param str store: a folder or an MLflow tracking URI (above).
    :param run_dir: the run folder (its name is the MLflow run's; ``mlflow.json`` in it keeps
        the run id for ``--resume``).
    """

    def __init__(self, store: str, run_dir: Path) -> None:
        require_mlflow()
        from mlflow.tracking import MlflowClient

        self.uri, artifacts = tracking_uri(store)
        if artifacts is not None:
            artifacts.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri)
        self.run_dir = Path(run_dir)
        self.run_id: str | None = None
        self._artifacts = artifacts

    def start(self, params: dict[str, Any]) -> str:
        """Open the run (the one ``mlflow.json`` names, when it is in this store; else a new
        one) and log ``params`` (nested dicts flattened to ``a.b`` keys); returns its id."""
        saved = self.run_dir / RUN_FILE
        if saved.is_file():
            known = json.loads(saved.read_text())
            if known.get("tracking_uri") == self.uri:
                self.run_id = known["run_id"]
                self.client.update_run(self.run_id, status="RUNNING")
        if self.run_id is None:
            experiment = self.client.get_experiment_by_name(EXPERIMENT)
            if experiment is None:
                location = self._artifacts.as_uri() if self._artifacts is not None else None
                experiment_id = self.client.create_experiment(EXPERIMENT, artifact_location=location)
            else:
                experiment_id = experiment.experiment_id
            run = self.client.create_run(experiment_id, run_name=self.run_dir.name,
                                         tags={"pyrogen.run_dir": str(self.run_dir.resolve())})
            self.run_id = run.info.run_id
            text = json.dumps({"tracking_uri": self.uri, "run_id": self.run_id}) + "\n"
            atomic_write(saved, lambda f: f.write(text.encode()))
            from mlflow.entities import Param

            flat: dict[str, str] = {}
            _flat("", params, flat)
            items = [Param(k, v[:6000]) for k, v in sorted(flat.items())]
            for i in range(0, len(items), 100):  # MLflow takes at most 100 per batch
                self.client.log_batch(self.run_id, params=items[i:i + 100])
        return self.run_id

    def epoch(self, record: dict[str, Any]) -> None:
        """Log the epoch's numbers (finite ones) as metrics at step ``record["epoch"]``."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, int(record["epoch"])) for k, v in sorted(record.items())
                   if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)
                   and math.isfinite(v)]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, status: str = "FINISHED") -> None:
        """Log the run folder's pictures, curves, configuration, log and best checkpoint (on
        success) and close the MLflow run with ``status``."""
        if self.run_id is None:
            return
        if status == "FINISHED":
            for name in ARTIFACTS:
                path = self.run_dir / name
                if path.is_file():
                    folder = str(Path(name).parent) if "/" in name else None
                    self.client.log_artifact(self.run_id, str(path), artifact_path=folder)
        self.client.set_terminated(self.run_id, status=status)
        self.run_id = None


__all__ = ["ARTIFACTS", "EXPERIMENT", "MLflowTracker", "RUN_FILE", "require_mlflow", "tracking_uri"]
