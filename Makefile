# pyrogen: `make demo` and `make test` work on a fresh machine with Python >= 3.10.
# Both create (or reuse) the virtual environment .venv at the repository root.
# CPU-only machines: install a CPU build of torch into .venv first (see README.md).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_RUN ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)

.PHONY: demo test wheel-check gpu-wheels docs gallery bench clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

$(VENV)/.installed: $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -e ".[test]"
	touch $@

$(VENV)/.installed-docs: $(VENV)/.installed
	$(PY) -m pip install -e ".[docs]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m pyrogen train vae --dataset digits --binarize dynamic --latent-dim 8 --hidden 256 \
		--epochs 60 --batch-size 50 --lr 2e-3 --lr-schedule cosine --lr-min 1e-5 --out $(DEMO_RUN)
	$(PY) -m pyrogen evaluate $(DEMO_RUN) --iw-samples 1000
	$(PY) -m pyrogen sample $(DEMO_RUN) --num 64 --out $(DEMO_RUN)/final_samples.png
	@echo "demo run folder: $(DEMO_RUN) (metrics.jsonl, evaluation.json, samples.png, reconstructions.png, final_samples.png)"

test: $(VENV)/.installed-test
	$(PY) -m pytest

wheel-check:
	.ci/wheel_check

# wheels for benchmarks/gpu_check.sh on a GPU machine without a package index (its torch is
# its own): pyrogen's wheel and its dependencies' except torch's, for that machine's Python
GPU_PY ?= 3.11
GPU_DEPS = pyro-ppl pyro-api opt-einsum arviz xarray xarray-einstats pandas python-dateutil six \
	tzdata h5netcdf h5py scikit-learn scipy joblib threadpoolctl tqdm matplotlib contourpy \
	cycler fonttools kiwisolver pyparsing pillow numpy packaging platformdirs typing-extensions \
	pytest iniconfig pluggy pygments narwhals cloudpickle
gpu-wheels: $(VENV)/.installed
	rm -rf gpu-wheels && $(PY) -m pip wheel -q --no-deps -w gpu-wheels .
	$(PY) -m pip download -q --no-deps -d gpu-wheels --only-binary=:all: --python-version $(GPU_PY) \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 --platform any $(GPU_DEPS)

gallery: $(VENV)/.installed
	$(PY) docs/gallery.py --work runs/gallery --out docs/_static/gallery

docs: $(VENV)/.installed-docs
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html
	@! grep -rlE "src=\"https?://[^\"]*mathjax" docs/_build/html --include=*.html || \
		{ echo "docs: a page loads MathJax from the internet" >&2; exit 1; }
	@test -f docs/_build/html/_static/mathjax/tex-chtml.js

clean-venv:
	rm -rf $(VENV)
