"""Every script in ``benchmarks/`` imports against the current package: a renamed or moved
pyrogen name breaks a benchmark only when someone runs it, often sessions later."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))


def test_there_are_benchmark_scripts():
    assert len(SCRIPTS) > 10, SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_benchmark_script_imports_and_says_what_it_measures(script, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # their shared _common module
    spec = importlib.util.spec_from_file_location(f"benchmark_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)  # runs no benchmark: each script's work is under __main__
    assert module.__doc__ and module.__doc__.strip(), f"{script.name} has no docstring"


@pytest.mark.parametrize("argv, message", [
    (["--objective", "iwae", "--num-particles", "5", "--kl-warmup", "5"], "no KL term to anneal"),
    (["--objective", "iwae"], "needs --num-particles K >= 2"),
    (["--iwae-gradient", "dreg"], "--iwae-gradient dreg: needs --objective iwae"),
])
def test_vae_mnist_refuses_what_the_iwae_cannot_take_in_one_line(argv, message, tmp_path):
    import subprocess

    done = subprocess.run([sys.executable, str(BENCHMARKS / "vae_mnist.py"), "--data-dir",
                           str(tmp_path), *argv], capture_output=True, text=True)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_vae_mnist_compares_each_objective_with_burdas_figure_for_it(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("benchmark_vae_mnist_reference", BENCHMARKS / "vae_mnist.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.reference_nll("iwae", 5) == 85.54  # Burda et al.'s IWAE, k = 5
    assert module.reference_nll("iwae", 50) == 84.78
    assert module.reference_nll("iwae", 3) is None  # not in their table
    assert module.reference_nll("meanfield", 4) == 86.76  # their VAE, one sample
    assert module.reference_nll("elbo", 1) == 86.76
