import json

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from clitools import last_json, run
from pyrogen.models import DFCVAE
from pyrogen.nn import VGG19Features, load_vgg19_features
from pyrogen.nn.vgg import _CONVS


def torchvision_state(seed=0, prefix="features."):
    """A state dict laid out as torchvision's vgg19(): convolutions at features.0, 2, 5, 7,
    10 (and more that pyrogen does not read), plus a classifier head."""
    g = torch.Generator().manual_seed(seed)
    reference = VGG19Features()
    state = {}
    for name, index in _CONVS.items():
        conv = reference.convs[name]
        state[f"{prefix}{index}.weight"] = torch.randn(conv.weight.shape, generator=g) * 0.05
        state[f"{prefix}{index}.bias"] = torch.randn(conv.bias.shape, generator=g) * 0.05
    state[f"{prefix}12.weight"] = torch.randn(256, 256, 3, 3, generator=g)
    if prefix:
        state["classifier.0.weight"] = torch.randn(10, 4, generator=g)
    return state


@pytest.mark.parametrize("prefix", ["features.", ""], ids=["whole-model", "features-only"])
def test_weights_load_from_a_torchvision_state_dict(tmp_path, prefix):
    state = torchvision_state(prefix=prefix)
    torch.save(state, tmp_path / "vgg19.pth")
    net = load_vgg19_features(tmp_path / "vgg19.pth")
    for name, index in _CONVS.items():
        assert torch.equal(net.convs[name].weight, state[f"{prefix}{index}.weight"])
    x = torch.rand(2, 1, 28, 28)
    feats = net.features(x)
    assert [tuple(f.shape) for f in feats.values()] == [(2, 64, 28, 28), (2, 128, 14, 14), (2, 256, 7, 7)]
    # grey input is the RGB image with three equal channels, normalised as ImageNet's
    rgb = net.features(x.expand(-1, 3, -1, -1))
    assert all(torch.allclose(a, b) for a, b in zip(feats.values(), rgb.values()))
    by_hand = torch.relu(net.convs["conv1_1"]((x.expand(-1, 3, -1, -1) - net.mean) / net.std))
    assert torch.allclose(feats["relu1_1"], by_hand)


def test_bad_files_get_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_vgg19_features(tmp_path / "missing.pth")
    state = torchvision_state()
    del state["features.5.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="features.5.weight"):
        load_vgg19_features(tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="layers must be among"):
        VGG19Features().features(torch.rand(1, 1, 8, 8), ["relu4_1"])


def test_dfcvae_trains_on_vgg_features_from_the_command_line(capsys, tmp_path):
    torch.save(torchvision_state(), tmp_path / "vgg19.pth")
    dfc = DFCVAE((1, 8, 8), load_vgg19_features(tmp_path / "vgg19.pth"), latent_dim=3,
                 hidden=(16,), arch="mlp", layers=("relu1_1", "relu2_1", "relu3_1"))
    assert dfc.config["feature_net"] == {"kind": "vgg19"}
    x = torch.rand(10, 1, 8, 8)
    svi = SVI(dfc.model, dfc.guide, Adam({"lr": 1e-3}), Trace_ELBO())
    assert torch.isfinite(torch.tensor(svi.step(x)))
    assert not any("convs" in name for name in pyro.get_param_store().keys())

    out = tmp_path / "dfc"
    code, stdout, err = run(capsys, "train", "dfcvae", "--features", tmp_path / "vgg19.pth",
                            "--epochs", "1", "--limit", "100", "--latent-dim", "3", "--hidden", "16",
                            "--batch-size", "50", "--out", out, "--device", "cpu", "--no-progress")
    assert code == 0, err
    code, stdout, err = run(capsys, "evaluate", out, "--iw-samples", "3", "--device", "cpu")
    assert code == 0, err  # rebuilt from its config: the VGG weights travel in the checkpoint
    assert last_json(stdout)["feature_space"]


def test_dfcvae_layers_follow_the_feature_network_unless_given(capsys, tmp_path):
    """A VGG19 file takes the paper's VGG layers by default; layers the user names are kept
    as named (and a classifier's names, which VGG19 has not, are refused, not swapped)."""
    torch.save(torchvision_state(), tmp_path / "vgg19.pth")
    common = ["--features", tmp_path / "vgg19.pth", "--epochs", "1", "--limit", "100",
              "--latent-dim", "3", "--hidden", "16", "--batch-size", "50", "--device", "cpu",
              "--no-progress"]
    code, stdout, err = run(capsys, "train", "dfcvae", *common, "--out", tmp_path / "a")
    assert code == 0, err
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["model_config"]["layers"] == ["relu1_1", "relu2_1", "relu3_1"]
    code, stdout, err = run(capsys, "train", "dfcvae", *common, "--feature-layers", "relu1_1",
                            "--out", tmp_path / "b")
    assert code == 0, err
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["model_config"]["layers"] == ["relu1_1"]
    code, stdout, err = run(capsys, "train", "dfcvae", *common, "--feature-layers",
                            "relu1,relu2,relu3", "--out", tmp_path / "c")
    assert code != 0 and "relu1_1" in err and "Traceback" not in err
