import pytest
import torch

from pyrogen.nn import MLP


def test_glorot_init_bounds_variance_and_other_modules():
    import math

    from pyrogen.nn import glorot_init_

    net = MLP(300, (100,), 50, activation="tanh")
    norm = torch.nn.LayerNorm(5)
    before = norm.weight.clone()
    net.apply(glorot_init_)
    norm.apply(glorot_init_)
    for layer, (fan_in, fan_out) in zip([m for m in net.modules() if isinstance(m, torch.nn.Linear)],
                                        [(300, 100), (100, 50)]):
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert layer.weight.abs().max() <= bound
        # the variance of U(-a, a) is a^2 / 3 = 2 / (fan_in + fan_out)
        assert layer.weight.var().item() == pytest.approx(2 / (fan_in + fan_out), rel=0.05)
        assert (layer.bias == 0).all()
    assert torch.equal(norm.weight, before)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a, b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    glorot_init_(a, generator=g1)
    glorot_init_(b, generator=g2)
    assert torch.equal(a.weight, b.weight)
