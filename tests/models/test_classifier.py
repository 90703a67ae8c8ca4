import pyro
import pytest
import torch
import torch.nn.functional as F
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyrogen.models.classifier import Classifier, ImageClassifier


@pytest.fixture(scope="module")
def sklearn_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
    return x, torch.tensor(digits.target, dtype=torch.int64)


@pytest.mark.parametrize(
    "data_shape, relu3_shape",
    [((1, 8, 8), (128, 2, 2)), ((1, 28, 28), (128, 7, 7)), ((3, 64, 64), (128, 16, 16)),
     ((3, 8, 8), (128, 2, 2)), ((1, 9, 13), (128, 2, 3))],
    ids=["1x8x8", "1x28x28", "3x64x64", "3x8x8", "1x9x13"],
)
def test_shapes_of_logits_and_features(data_shape, relu3_shape):
    net = Classifier(data_shape, num_classes=7)
    x = torch.rand(5, *data_shape)
    assert net(x).shape == (5, 7)
    feats = net.features(x)
    assert tuple(feats) == net.LAYERS == ("relu1", "relu2", "relu3", "penultimate")
    assert feats["relu1"].shape == (5, 32, *data_shape[1:])
    assert feats["relu3"].shape == (5, *relu3_shape)
    assert feats["penultimate"].shape == (5, 128)
    assert net.embed(x).shape == (5, 128)
    assert all((f >= 0).all() for f in feats.values())  # every named layer is a ReLU output


def test_features_keep_leading_dimensions_and_stop_early():
    net = Classifier((1, 8, 8), num_classes=3, channels=(4, 8), hidden=6)
    assert net.LAYERS == ("relu1", "relu2", "penultimate")
    x = torch.rand(2, 5, 1, 8, 8)
    feats = net.features(x, ["relu1"])
    assert list(feats) == ["relu1"] and feats["relu1"].shape == (2, 5, 4, 8, 8)
    assert torch.allclose(net.features(x)["relu2"][1, 3], net.features(x[1, 3:4])["relu2"][0])
    assert net(x).shape == (2, 5, 3)


def test_trace_elbo_with_the_empty_guide_is_the_summed_cross_entropy():
    clf = ImageClassifier((1, 8, 8), num_classes=10, channels=(4, 8, 8), hidden=16)
    x, y = torch.rand(12, 1, 8, 8), torch.randint(0, 10, (12,))
    expected = F.cross_entropy(clf.net(x), y, reduction="sum").item()
    assert Trace_ELBO().loss(clf.model, clf.guide, x, y) == pytest.approx(expected, rel=1e-5)
    scaled = Trace_ELBO().loss(clf.model, clf.guide, x, y, num_data=120)
    assert scaled == pytest.approx(10 * expected, rel=1e-5)


def test_elbo_module_holds_exactly_the_network_parameters():
    clf = ImageClassifier((1, 8, 8), num_classes=10, channels=(4, 8, 8), hidden=16)
    module = Trace_ELBO()(clf.model, clf.guide)
    assert {id(p) for p in module.parameters()} == {id(p) for p in clf.net.parameters()}


def test_svi_reaches_90_percent_training_accuracy_on_digits(sklearn_digits):
    x, y = sklearn_digits
    clf = ImageClassifier((1, 8, 8), num_classes=10)
    svi = SVI(clf.model, clf.guide, Adam({"lr": 3e-3}), Trace_ELBO())
    before = clf.accuracy(x, y)
    generator = torch.Generator().manual_seed(0)
    for _ in range(4):
        for index in torch.randperm(len(x), generator=generator).split(64):
            svi.step(x[index], y[index], num_data=len(x))
    assert before < 0.3
    assert clf.accuracy(x, y) > 0.9
    stored = {id(p) for _, p in pyro.get_param_store().named_parameters()}
    assert stored == {id(p) for p in clf.net.parameters()}


def test_torch_optimiser_over_the_elbo_module_trains_too(sklearn_digits):
    x, y = sklearn_digits
    x, y = x[:256], y[:256]
    clf = ImageClassifier((1, 8, 8), num_classes=10, channels=(8, 16, 32), hidden=32)
    loss_fn = Trace_ELBO()(clf.model, clf.guide)
    optimiser = torch.optim.Adam(loss_fn.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        optimiser.zero_grad()
        loss = loss_fn(x, y)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_predict_and_labels_drawn_when_y_is_none():
    clf = ImageClassifier((3, 8, 8), num_classes=4, channels=(4, 8, 8), hidden=8)
    x = torch.rand(6, 3, 8, 8)
    pred = clf.predict(x, batch_size=4)
    assert pred.dtype == torch.int64 and pred.shape == (6,)
    assert clf.accuracy(x, pred) == 1.0
    drawn = clf.model(x, None)
    assert drawn.shape == (6,) and ((0 <= drawn) & (drawn < 4)).all()


def test_config_rebuilds_the_same_architecture():
    clf = ImageClassifier((1, 28, 28), num_classes=10, channels=(8, 16), hidden=12)
    twin = ImageClassifier(**clf.config)
    twin.load_state_dict(clf.state_dict())
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(twin.net(x), clf.net(x)) and twin.config == clf.config


def test_bad_inputs_raise_value_error():
    clf = ImageClassifier((1, 8, 8), num_classes=10, channels=(4, 8, 8), hidden=8)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 1, 8, 8\), got \(4, 64\)"):
        clf.model(torch.zeros(4, 64), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 1, 8, 8\)"):
        clf.net(torch.zeros(4, 1, 28, 28))
    with pytest.raises(ValueError, match=r"y must be an int64 tensor of shape \(4,\)"):
        clf.model(torch.zeros(4, 1, 8, 8), torch.zeros(4))
    with pytest.raises(ValueError, match="layers must be a sequence of names"):
        clf.features(torch.zeros(2, 1, 8, 8), ["conv1"])
    with pytest.raises(ValueError, match=r"H, W >= 4 for 3 convolutional stages, got \(1, 3, 8\)"):
        Classifier((1, 3, 8), num_classes=10)
    with pytest.raises(ValueError, match="data_shape must be"):
        Classifier((64,), num_classes=10)
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        Classifier((1, 8, 8), num_classes=1)
    with pytest.raises(ValueError, match=r"y must have shape \(4,\)"):
        clf.accuracy(torch.zeros(4, 1, 8, 8), torch.zeros(3, dtype=torch.int64))
