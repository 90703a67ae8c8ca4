"""Helpers for the tests that a resumed run equals one that was never stopped."""

import torch


def stop_and_resume(make, run_dir, epochs, stop, **options):
    """Train ``stop`` epochs into ``run_dir``, then resume that run to ``epochs`` with a
    trainer built from other initial weights (the checkpoint must overwrite them); return
    the resumed trainer. ``make(run_dir, epochs=..., init_seed=..., **options)`` builds one."""
    make(run_dir, epochs=stop, **options).fit()
    resumed = make(run_dir, epochs=epochs, init_seed=9, **options)
    resumed.resume()
    resumed.fit()
    return resumed


def assert_same_state(a, b):
    """Two state dicts hold the same keys and bit-identical tensors under each."""
    assert set(a) == set(b), sorted(set(a) ^ set(b))
    for name, x in a.items():
        assert torch.equal(x, b[name]), name


def assert_same_weights(a, b):
    """Two modules hold bit-identical parameters and buffers, under the same names."""
    assert_same_state(a.state_dict(), b.state_dict())
