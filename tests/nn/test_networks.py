from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils._pytree import tree_flatten
from torch.utils._python_dispatch import TorchDispatchMode

from pyrogen.nn import (
    ACTIVATIONS,
    MLP,
    ConvDecoder,
    ConvEncoder,
    ConvTrunk,
    MLPDecoder,
    MLPEncoder,
    build_decoder,
    build_encoder,
    conv_trunk,
)

LATENT = 4

# (arch, data_shape, extra kwargs); small widths keep the suite fast on a CPU
CASES = [
    ("mlp", (1, 8, 8), {"hidden": (16,)}),
    ("mlp", (1, 28, 28), {"hidden": (16, 16)}),
    ("mlp", (3, 64, 64), {"hidden": (8,)}),
    ("conv", (1, 28, 28), {"channels": (4, 8)}),
    ("conv", (1, 28, 28), {"channels": (4, 8), "batch_norm": True}),
    ("conv", (3, 64, 64), {"channels": (4, 4, 8, 8)}),
    ("conv", (3, 64, 64), {"channels": (4, 4, 8, 8), "batch_norm": True}),
]


def _id(case):
    arch, shape, kwargs = case
    return f"{arch}-{'x'.join(map(str, shape))}" + ("-bn" if kwargs.get("batch_norm") else "")


IDS = [_id(c) for c in CASES]


def _encoder(arch, shape, kwargs):
    return build_encoder(arch, shape, LATENT, **kwargs)


def _decoder(arch, shape, kwargs):
    return build_decoder(arch, LATENT, shape, **kwargs)


def _num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------------------
# shapes
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_encoder_shapes_and_positive_scale(case):
    arch, shape, kwargs = case
    enc = _encoder(*case)
    loc, scale = enc(torch.randn(3, *shape))
    assert loc.shape == scale.shape == (3, LATENT)
    assert (scale > 0).all() and torch.isfinite(loc).all()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_encoder_leading_dims_match_flat_batch(case):
    arch, shape, kwargs = case
    enc = _encoder(*case)
    x = torch.randn(2, 3, *shape)
    loc, scale = enc(x)
    assert loc.shape == scale.shape == (2, 3, LATENT)
    flat_loc, flat_scale = enc(x.reshape(6, *shape))
    assert torch.allclose(loc, flat_loc.reshape(2, 3, LATENT), atol=1e-6)
    assert torch.allclose(scale, flat_scale.reshape(2, 3, LATENT), atol=1e-6)


@pytest.mark.parametrize("lead", [(), (5,), (2, 3)], ids=["unbatched", "B", "K-B"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_decoder_leading_dims(case, lead):
    arch, shape, kwargs = case
    dec = _decoder(*case).eval()  # eval: batch norm must also accept a single latent code
    z = torch.randn(*lead, LATENT)
    out = dec(z)
    assert out.shape == (*lead, *shape)
    flat = dec(z.reshape(-1, LATENT))
    assert torch.allclose(out, flat.reshape(*lead, *shape), atol=1e-6)


def test_scale_floor_survives_underflow():
    enc = MLPEncoder((1, 8, 8), LATENT, hidden=(8,), min_scale=1e-3)
    with torch.no_grad():
        enc.net.layers[-1].bias[LATENT:] = -1e4  # raw scale so negative that softplus is 0
    _, scale = enc(torch.randn(2, 1, 8, 8))
    assert torch.equal(scale, torch.full_like(scale, 1e-3))


# ------------------------------------------------------------------------------------------
# gradients, dtype and device
# ------------------------------------------------------------------------------------------


def _assert_all_grads(module: nn.Module) -> None:
    for name, p in module.named_parameters():
        assert p.grad is not None, f"no gradient reached {name}"
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"zero gradient at {name}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradients_reach_every_parameter(case):
    arch, shape, kwargs = case
    enc, dec = _encoder(*case), _decoder(*case)
    loc, scale = enc(torch.randn(4, *shape))
    out = dec(loc + scale * torch.randn_like(scale))
    # random weights: a plain sum could cancel exactly through batch normalisation
    (out * torch.randn_like(out)).sum().backward()
    _assert_all_grads(enc)
    _assert_all_grads(dec)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_dtype_follows_module(case):
    arch, shape, kwargs = case
    enc = _encoder(*case).to(torch.float64)
    dec = _decoder(*case).to(torch.float64)
    loc, scale = enc(torch.randn(2, *shape, dtype=torch.float64))
    assert loc.dtype == scale.dtype == torch.float64
    assert dec(torch.randn(2, LATENT, dtype=torch.float64)).dtype == torch.float64


class _RecordDevices(TorchDispatchMode):
    """Record the device of every tensor that any aten op produces."""

    def __init__(self):
        super().__init__()
        self.created = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.created.add((str(func), t.device.type))
        return out


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_no_hidden_cpu_tensors_on_meta_device(case):
    # a constant made on the CPU at forward time (even a 0-dim one, which would mix silently
    # with tensors on another device) shows up as a "cpu" output of some aten op
    arch, shape, kwargs = case
    enc = _encoder(*case).to("meta")
    dec = _decoder(*case).to("meta")
    x = torch.empty(2, 3, *shape, device="meta")
    z = torch.empty(2, 3, LATENT, device="meta")
    with _RecordDevices() as record:
        loc, scale = enc(x)
        out = dec(z)
    assert {dev for _, dev in record.created} == {"meta"}, sorted(record.created)
    assert loc.device.type == scale.device.type == out.device.type == "meta"
    assert out.shape == (2, 3, *shape)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_runs_on_cuda(case):
    arch, shape, kwargs = case
    enc, dec = _encoder(*case).cuda(), _decoder(*case).cuda()
    loc, scale = enc(torch.randn(2, *shape, device="cuda"))
    assert loc.device == scale.device == dec(loc).device == torch.device("cuda", 0)


# ------------------------------------------------------------------------------------------
# architecture details
# ------------------------------------------------------------------------------------------


def test_burda_parameter_counts():
    enc = build_encoder("mlp", (1, 28, 28), 50, hidden=(200, 200), activation="tanh")
    dec = build_decoder("mlp", 50, (1, 28, 28), hidden=(200, 200), activation="tanh")
    assert _num_params(enc) == 784 * 200 + 200 + 200 * 200 + 200 + 200 * 100 + 100 == 217300
    assert _num_params(dec) == 50 * 200 + 200 + 200 * 200 + 200 + 200 * 784 + 784 == 207984
    assert sum(isinstance(m, nn.Tanh) for m in enc.modules()) == 2


@pytest.mark.parametrize(
    "shape, out_features, sides",
    [((1, 28, 28), 128 * 7 * 7, (7, 14, 28)), ((3, 64, 64), 512 * 4 * 4, (4, 8, 16, 32, 64))],
    ids=["28x28", "64x64"],
)
def test_conv_default_architecture(shape, out_features, sides):
    enc = ConvEncoder(shape, LATENT)
    assert enc.out_features == enc.trunk.out_features == out_features
    assert enc.features(torch.randn(1, *shape)).shape == (1, out_features)
    convs = [m for m in enc.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in enc.modules())
    # the decoder mirrors the encoder: record the spatial side after each stage
    dec = ConvDecoder(LATENT, shape)
    seen = []
    for m in dec.modules():
        if isinstance(m, nn.ConvTranspose2d):
            m.register_forward_hook(lambda mod, inp, out: seen.append(out.shape[-1]))
    dec(torch.randn(1, LATENT))
    assert dec.in_shape[1:] == (sides[0], sides[0])
    assert tuple(seen) == sides[1:]
    channels = [m.out_channels for m in dec.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert channels == [c.in_channels for c in reversed(convs)]


def test_dcgan_initialisation():
    enc = ConvEncoder((3, 64, 64), LATENT, batch_norm=True)
    big = enc.trunk.layers[-3]  # 256 -> 512 convolution: 2M weights
    assert isinstance(big, nn.Conv2d) and big.bias is None
    assert abs(big.weight.std().item() - 0.02) < 1e-3
    assert abs(big.weight.mean().item()) < 1e-3
    bns = [m for m in enc.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 3  # not after the first convolution, as in DCGAN
    weights = torch.cat([bn.weight.detach() for bn in bns])
    assert abs(weights.mean().item() - 1.0) < 0.01 and 0.005 < weights.std().item() < 0.04


def test_conv_trunk_builder():
    trunk = conv_trunk((2, 28, 28), channels=(4, 6), batch_norm=True, activation="elu")
    assert isinstance(trunk, ConvTrunk) and trunk.out_features == 6 * 7 * 7
    assert trunk(torch.randn(3, 5, 2, 28, 28)).shape == (3, 5, 6 * 7 * 7)
    assert any(isinstance(m, nn.ELU) for m in trunk.modules())


def test_activation_table():
    assert set(ACTIVATIONS) == {
        "relu", "leaky_relu", "tanh", "elu", "softplus", "gelu", "silu", "sigmoid"
    }
    assert ACTIVATIONS["leaky_relu"]().negative_slope == 0.2
    assert all(issubclass(cls, nn.Module) for cls in ACTIVATIONS.values())


def test_mlp_layers_and_output_activation():
    net = MLP(5, (), 3, output_activation="sigmoid")
    assert [type(m) for m in net.layers] == [nn.Linear, nn.Sigmoid]
    net = MLP(5, (7, 7), 3, activation="gelu", output_activation="sigmoid")
    y = net(100 * torch.randn(4, 2, 5))
    assert y.shape == (4, 2, 3) and ((y >= 0) & (y <= 1)).all()


def test_factory_defaults():
    assert isinstance(build_encoder("mlp", (1, 8, 8), 2).net.layers[1], nn.ReLU)
    conv = build_encoder("conv", (1, 28, 28), 2, hidden=(999,))  # hidden is ignored by conv
    assert isinstance(conv.trunk.layers[1], nn.LeakyReLU)
    assert conv.trunk.channels == (64, 128)
    dec = build_decoder("conv", 2, (1, 28, 28), activation="tanh", batch_norm=True)
    assert isinstance(dec, ConvDecoder) and any(isinstance(m, nn.Tanh) for m in dec.modules())
    assert isinstance(build_decoder("mlp", 2, (1, 8, 8)), MLPDecoder)


# ------------------------------------------------------------------------------------------
# argument checks
# ------------------------------------------------------------------------------------------

BAD = [
    (lambda: MLP(4, (8,), 2, activation="swish"), r"activation.*'swish'"),
    (lambda: MLP(4, (8,), 2, output_activation="soft"), r"output_activation.*'soft'"),
    (lambda: MLP(4, (8, 0), 2), r"hidden.*\(8, 0\)"),
    (lambda: MLPEncoder((1, 8, 8), 2, activation="Relu"), r"activation.*relu.*'Relu'"),
    (lambda: ConvDecoder(2, (1, 28, 28), activation="nope"), r"activation.*'nope'"),
    (lambda: build_encoder("resnet", (1, 28, 28), 2), r"arch.*'conv'.*'mlp'.*'resnet'"),
    (lambda: build_decoder("MLP", 2, (1, 28, 28)), r"arch.*'MLP'"),
    (lambda: ConvEncoder((1, 8, 8), 2), r"data_shape.*28, 28.*64, 64.*\(1, 8, 8\)"),
    (lambda: ConvDecoder(2, (3, 32, 32)), r"data_shape.*\(3, 32, 32\)"),
    (lambda: build_encoder("conv", (28, 28), 2), r"data_shape.*\(28, 28\)"),
    (lambda: ConvEncoder((1, 28, 28), 2, channels=(8, 16, 32)), r"channels.*2 entries"),
    (lambda: MLPEncoder((1, 8, 8), 0), r"latent_dim.*0"),
    (lambda: MLPDecoder(-3, (1, 8, 8)), r"latent_dim.*-3"),
    (lambda: ConvEncoder((1, 28, 28), 0), r"latent_dim.*0"),
    (lambda: build_decoder("conv", 0, (1, 28, 28)), r"latent_dim.*0"),
    (lambda: MLPEncoder((), 2), r"data_shape.*non-empty.*\(\)"),
    (lambda: MLPDecoder(2, ()), r"data_shape.*non-empty"),
    (lambda: build_encoder("mlp", (1, 0, 8), 2), r"data_shape.*\(1, 0, 8\)"),
    (lambda: MLPEncoder((1, 8, 8), 2, min_scale=0.0), r"min_scale.*0.0"),
]


@pytest.mark.parametrize("make, message", BAD, ids=[m for _, m in BAD])
def test_bad_arguments_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_wrong_input_shape_raises(case):
    arch, shape, kwargs = case
    enc, dec = _encoder(*case), _decoder(*case)
    wrong = (shape[0] + 1,) + shape[1:]
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., "):
        enc(torch.randn(2, *wrong))
    with pytest.raises(ValueError, match=rf"z must have shape \(\.\.\., {LATENT}\); got \(2, 5\)"):
        dec(torch.randn(2, LATENT + 1))


def test_non_integer_sizes_raise_type_error():
    with pytest.raises(TypeError, match="latent_dim"):
        MLPEncoder((1, 8, 8), 2.5)
    with pytest.raises(TypeError, match="hidden"):
        MLP(4, 400, 2)
    assert math.prod(MLPEncoder([1, 8, 8], 2).data_shape) == 64  # lists are accepted
