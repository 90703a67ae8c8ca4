"""Mode coverage, precision/recall, reconstruction error and linear probes against hand values."""

import math

import pytest
import torch

from pyrogen.metrics import (
    class_histogram,
    linear_probe_accuracy,
    mode_coverage,
    precision_recall,
    reconstruction_error,
)


def test_class_histogram_and_errors():
    assert class_histogram(torch.tensor([0, 0, 2, 1]), 3).tolist() == [0.5, 0.25, 0.25]
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        class_histogram(torch.tensor([3]), 3)


def test_mode_coverage_matches_hand_values():
    data = torch.tensor([0, 1, 2, 3] * 25)  # uniform over 4 classes
    assert mode_coverage(data, data, 4) == {"classes_covered": 1.0, "class_kl": 0.0,
                                            "min_class_share": 0.25, "rarest_class": 0}
    collapsed = torch.zeros(100, dtype=torch.long)  # every sample is a 0
    result = mode_coverage(collapsed, data, 4)
    assert result["classes_covered"] == 0.25
    assert result["class_kl"] == pytest.approx(math.log(4))  # KL(delta_0 || uniform)
    half = torch.tensor([0, 1] * 50)
    result = mode_coverage(half, data, 4)
    assert result["classes_covered"] == 0.5 and result["class_kl"] == pytest.approx(math.log(2))
    # a class at 2% of the samples against 25% of the data is not covered at threshold 0.1
    rare = torch.tensor([0] * 49 + [1] * 49 + [2] * 2)
    assert mode_coverage(rare, data, 4)["classes_covered"] == 0.5
    assert mode_coverage(rare, data, 4)["min_class_share"] == 0.0  # class 3 is missing
    assert mode_coverage(rare, data, 4)["rarest_class"] == 3
    few_threes = mode_coverage(torch.tensor([0] * 40 + [1] * 30 + [2] * 27 + [3] * 3), data, 4)
    assert few_threes["min_class_share"] == 0.03 and few_threes["rarest_class"] == 3
    # a class the data lack is not the rarest one, even at share 0
    assert mode_coverage(torch.tensor([0, 1]), torch.tensor([0, 1, 1]), 3)["rarest_class"] == 0
    assert mode_coverage(torch.tensor([3]), torch.tensor([0, 1]), 4)["class_kl"] == math.inf


def test_precision_recall_on_hand_made_sets():
    real = torch.arange(10.0).reshape(-1, 1)  # points 0..9: each 3rd-NN radius is 2 or 3
    assert precision_recall(real, real.clone()) == {"precision": 1.0, "recall": 1.0}
    far = real + 100
    assert precision_recall(real, far) == {"precision": 0.0, "recall": 0.0}
    # generated points only near 0..4: all realistic, but half of the data is missed
    gen = torch.tensor([[0.0], [1.0], [2.0], [3.0], [4.0], [0.5], [1.5], [2.5], [3.5]])
    result = precision_recall(real, gen, k=3)
    assert result["precision"] == 1.0
    # gen's radii: at most 1.5, so real points 0..5 are inside (5 is 1 from 4, whose radius is 1.5)
    assert result["recall"] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="same d"):
        precision_recall(real, torch.zeros(5, 2))


def test_reconstruction_error_against_random_pairs():
    x = torch.eye(4).reshape(4, 1, 2, 2)  # every pair of distinct points is sqrt(2) apart
    result = reconstruction_error(x, x)
    assert result["reconstruction_error"] == 0.0
    assert result["random_pair_error"] == pytest.approx(2.0)
    assert result["reconstruction_ratio"] == 0.0
    assert reconstruction_error(x, torch.zeros_like(x))["reconstruction_ratio"] == pytest.approx(0.5)


def test_linear_probe_reads_separable_codes_and_not_noise():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (300,), generator=g)
    codes = torch.nn.functional.one_hot(labels, 3).double() * 5 + 0.1 * torch.randn(300, 3, generator=g)
    assert linear_probe_accuracy(codes[:200], labels[:200], codes[200:], labels[200:]) == 1.0
    noise = torch.randn(300, 3, generator=g)
    assert linear_probe_accuracy(noise[:200], labels[:200], noise[200:], labels[200:]) < 0.6


def test_conditional_accuracy_counts_the_share_of_each_class_called_right():
    from pyrogen.metrics import conditional_accuracy

    class Model:  # draws images whose one pixel holds the class asked for
        def sample(self, n, y):
            return torch.full((n, 1, 1, 1), float(y))

    class Classifier:  # right for classes 0 and 1; calls class 2 a 1 half the time
        def predict(self, x):
            labels = x.flatten().long()
            labels[(labels == 2) & (torch.arange(len(labels)) % 2 == 0)] = 1
            return labels

    result = conditional_accuracy(Model(), Classifier(), num_classes=3, num_per_class=10)
    assert result["conditional_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert result["conditional_accuracy_min"] == 0.5
