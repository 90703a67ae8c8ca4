"""Split.batches: ordering, sharding, binarisation and reproducibility."""

from __future__ import annotations

import pytest
import torch

from pyrogen.data import Batch, Split


def make_split(n: int = 23, binarize: str = "none", labelled: bool = True) -> Split:
    generator = torch.Generator().manual_seed(123)
    images = torch.rand(n, 1, 4, 4, generator=generator)
    if binarize == "static":
        images = torch.bernoulli(images, generator=generator)
    labels = torch.arange(n) % 10 if labelled else None
    return Split(images, labels, binarize)


def epoch_indices(split: Split, batch_size: int, **kwargs) -> list[int]:
    return torch.cat([b.index for b in split.batches(batch_size, **kwargs)]).tolist()


def test_unshuffled_batches_in_order():
    split = make_split(23)
    batches = list(split.batches(5))
    assert [len(b.x) for b in batches] == [5, 5, 5, 5, 3]
    assert all(isinstance(b, Batch) for b in batches)
    first = batches[0]
    assert torch.equal(first.x, split.images[:5]) and torch.equal(first.y, split.labels[:5])
    assert first.index.dtype == torch.int64 and first.index.tolist() == [0, 1, 2, 3, 4]
    assert [len(b.x) for b in split.batches(5, drop_last=True)] == [5, 5, 5, 5]


@pytest.mark.parametrize("batch_size", [1, 4, 23, 100])
def test_shuffled_epoch_covers_every_index_once(batch_size):
    split = make_split(23)
    for batch in split.batches(batch_size, shuffle=True, epoch=2, seed=5):
        assert torch.equal(batch.x, split.images[batch.index]) and torch.equal(batch.y, split.labels[batch.index])
    assert sorted(epoch_indices(split, batch_size, shuffle=True, epoch=2, seed=5)) == list(range(23))


def test_permutation_depends_on_seed_and_epoch_only():
    split = make_split(50)
    base = epoch_indices(split, 7, shuffle=True, epoch=3, seed=1)
    assert base == epoch_indices(split, 7, shuffle=True, epoch=3, seed=1)
    assert base == epoch_indices(split, 50, shuffle=True, epoch=3, seed=1)  # batch size does not matter
    assert base != epoch_indices(split, 7, shuffle=True, epoch=4, seed=1)
    assert base != epoch_indices(split, 7, shuffle=True, epoch=3, seed=2)
    assert base != list(range(50))


@pytest.mark.parametrize("n, world_size", [(23, 2), (23, 4), (24, 3), (2, 3)])
def test_rank_shards_disjoint_and_cover(n, world_size):
    split = make_split(n)
    shards = [epoch_indices(split, 4, shuffle=True, epoch=1, rank=r, world_size=world_size) for r in range(world_size)]
    per_rank = -(-n // world_size)
    assert all(len(shard) == per_rank for shard in shards)  # padded to equal lengths
    everything = sum(shards, [])
    assert set(everything) == set(range(n))
    assert len(everything) - n == per_rank * world_size - n  # only the padding repeats
    # The permutation is shared: rank r holds positions r, r + world_size, ... of it.
    perm = epoch_indices(split, n, shuffle=True, epoch=1)
    padded = (perm * world_size)[: per_rank * world_size]
    assert shards[1] == padded[1::world_size]


def test_rank_shards_drop_last():
    split = make_split(23)
    shards = [epoch_indices(split, 5, shuffle=True, drop_last=True, rank=r, world_size=2) for r in range(2)]
    assert [len(s) for s in shards] == [10, 10]  # 11 each, then the incomplete batch is dropped
    assert not set(shards[0]) & set(shards[1])


def test_empty_split():
    split = make_split(0)
    assert list(split.batches(4, shuffle=True)) == []
    assert list(split.batches(4, world_size=2, rank=1)) == []


def test_dynamic_binarisation():
    split = make_split(400, binarize="dynamic")
    draw = lambda **kw: torch.cat([b.x for b in split.batches(64, **kw)])  # noqa: E731
    x = draw(epoch=0)
    assert set(x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(x, draw(epoch=0)), "same (seed, epoch, rank) must redraw the same"
    assert not torch.equal(x, draw(epoch=1)), "each epoch draws afresh"
    assert not torch.equal(x, draw(seed=1))
    assert abs(x.mean() - split.images.mean()) < 0.02
    # Across many epochs the draws average to the grey levels.
    mean = torch.stack([draw(epoch=e) for e in range(200)]).mean(0)
    assert (mean - split.images).abs().max() < 0.15
    rank1 = next(split.batches(400, rank=1, world_size=2)).x
    assert torch.equal(rank1, next(split.batches(400, rank=1, world_size=2)).x)


def test_dynamic_draws_differ_between_ranks_on_the_same_examples():
    # With one example and two ranks, padding gives both ranks example 0.
    split = Split(torch.full((1, 1, 32, 32), 0.5), None, "dynamic")
    x0 = next(split.batches(1, rank=0, world_size=2))
    x1 = next(split.batches(1, rank=1, world_size=2))
    assert x0.index.tolist() == x1.index.tolist() == [0]
    assert not torch.equal(x0.x, x1.x)


def test_static_and_none_are_fixed_across_epochs():
    for binarize in ("static", "none"):
        split = make_split(30, binarize=binarize)
        a = next(split.batches(30, epoch=0)).x
        b = next(split.batches(30, epoch=7)).x
        assert torch.equal(a, b) and torch.equal(a, split.images)


def test_global_rng_untouched():
    split = make_split(40, binarize="dynamic")
    state = torch.get_rng_state()
    for _ in split.batches(8, shuffle=True, epoch=3, rank=1, world_size=2):
        pass
    assert torch.equal(torch.get_rng_state(), state)


def test_unlabelled_split_yields_none():
    split = make_split(5, labelled=False)
    assert all(b.y is None for b in split.batches(2))


def test_to_and_properties():
    split = make_split(6)
    moved = split.to("cpu")
    assert isinstance(moved, Split) and torch.equal(moved.images, split.images) and moved.binarize == "none"
    assert len(moved) == 6 and moved.num_dims == 16 and moved.device == torch.device("cpu")
    assert "size=6" in repr(moved)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(batch_size=0), r"batch_size must be an integer >= 1, got 0"),
        (dict(batch_size=2.5), r"batch_size must be an integer >= 1, got 2.5"),
        (dict(batch_size=2, world_size=0), r"world_size must be an integer >= 1, got 0"),
        (dict(batch_size=2, rank=2, world_size=2), r"rank must be .*0 <= rank < world_size=2, got 2"),
        (dict(batch_size=2, rank=-1), r"rank must be .* got -1"),
        (dict(batch_size=2, epoch=-1), r"epoch must be a non-negative integer, got -1"),
        (dict(batch_size=2, seed=-3), r"seed must be a non-negative integer, got -3"),
    ],
    ids=["batch0", "batch-float", "world0", "rank-high", "rank-neg", "epoch-neg", "seed-neg"],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_split(4).batches(**kwargs)  # raised at the call, not at the first next()


def test_split_validation():
    with pytest.raises(ValueError, match=r"images must be a tensor of shape \(N, C, H, W\), got \(4, 16\)"):
        Split(torch.rand(4, 16), None)
    with pytest.raises(ValueError, match="float32"):
        Split(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), None)
    with pytest.raises(ValueError, match=r"labels must be an int64 tensor of shape \(4,\)"):
        Split(torch.rand(4, 1, 2, 2), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"binarize must be one of .*got 'sometimes'"):
        Split(torch.rand(4, 1, 2, 2), None, "sometimes")


def test_split_values_are_checked_in_words():
    """Values that would train the wrong objective, or fail deep inside torch, are refused
    where the split is made, naming what is wrong."""
    nan = torch.rand(4, 1, 2, 2)
    nan[2, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match=r"1 NaN or infinite value\(s\) \(first at image 2\)"):
        Split(nan, None)
    with pytest.raises(ValueError, match=r"values in \[0, 255\].*divide by 255"):
        Split(torch.linspace(0, 255, 16).reshape(4, 1, 2, 2), None)
    with pytest.raises(ValueError, match=r"values in \[-1, 1\]; pixels must be grey levels in \[0, 1\]$"):
        Split(torch.linspace(-1, 1, 16).reshape(4, 1, 2, 2), None)
    with pytest.raises(ValueError, match="labelled statically binarised.*grey levels"):
        Split(torch.full((4, 1, 2, 2), 0.5), None, "static")
    with pytest.raises(ValueError, match="labels must be class indices >= 0, got -1"):
        Split(torch.rand(4, 1, 2, 2), torch.tensor([0, 1, -1, 2]))
    Split(torch.bernoulli(torch.rand(4, 1, 2, 2)), None, "static")  # 0/1 is fine


def test_labels_beyond_the_classes_are_refused_in_words():
    from pyrogen.data import DataSplits

    split = Split(torch.rand(4, 1, 2, 2), torch.tensor([0, 1, 12, 2]))
    good = Split(torch.rand(4, 1, 2, 2), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"the train split has label 12, but the data set has 10 classes \(labels 0 to 9\)"):
        DataSplits("mine", split, good, good, "none", (1, 2, 2), 10)
