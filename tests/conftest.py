import sys
from pathlib import Path

import pyro
import pytest
import torch

# the probabilistic PCA helpers (tests/infer/ppca.py) serve every test folder
sys.path.insert(0, str(Path(__file__).parent / "infer"))
sys.path.insert(0, str(Path(__file__).parent))  # clitools


@pytest.fixture(autouse=True)
def pyro_state():
    """Each test starts with an empty param store, validation on, and fixed seeds."""
    pyro.clear_param_store()
    pyro.enable_validation(True)
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture
def digits():
    from pyrogen.data import load_dataset

    return load_dataset("digits", binarize="dynamic")


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
