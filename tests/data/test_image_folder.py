"""Image folders: PNG/JPEG files, resized, labelled by subfolder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pyrogen.data import DataFormatError, load_dataset, load_image_folder

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def save(path: Path, colour: tuple[int, int, int], size: tuple[int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def test_unlabelled_folder_resized_and_sorted(tmp_path):
    save(tmp_path / "b.png", GREEN, (40, 30))
    save(tmp_path / "a.PNG", RED, (7, 9))  # upper-case extensions count too
    (tmp_path / "notes.txt").write_text("not an image")
    images, labels, classes = load_image_folder(tmp_path, image_size=16)
    assert images.shape == (2, 3, 16, 16) and images.dtype == np.uint8
    assert labels is None and classes == []
    # Sorted order: a.PNG (red), then b.png (green); a flat colour survives resizing exactly.
    assert (images[0, 0] == 255).all() and (images[0, 1:] == 0).all()
    assert (images[1, 1] == 255).all() and (images[1, [0, 2]] == 0).all()


def test_subfolders_are_classes_png_and_jpeg(tmp_path):
    save(tmp_path / "dogs" / "x.jpg", BLUE, (50, 20))
    save(tmp_path / "cats" / "y.jpeg", RED, (10, 10))
    save(tmp_path / "cats" / "deeper" / "z.png", RED, (33, 12))  # nested: still class "cats"
    save(tmp_path / "dogs" / "w.JPG", BLUE, (8, 64))
    images, labels, classes = load_image_folder(tmp_path, image_size=12)
    assert classes == ["cats", "dogs"]
    # Sorted by relative path: cats/deeper/z.png, cats/y.jpeg, dogs/w.JPG, dogs/x.jpg
    assert labels.tolist() == [0, 0, 1, 1] and labels.dtype == np.int64
    assert images.shape == (4, 3, 12, 12)
    blue = images[2:].astype(int)
    assert (abs(blue[:, 2] - 255) <= 3).all() and (blue[:, :2] <= 3).all()  # JPEG is lossy


def test_grayscale(tmp_path):
    save(tmp_path / "a.png", (255, 255, 255), (5, 5))
    images, _, _ = load_image_folder(tmp_path, image_size=4, grayscale=True)
    assert images.shape == (1, 1, 4, 4) and (images == 255).all()


def test_load_dataset_folder_splits(tmp_path):
    for i in range(20):
        save(tmp_path / ("even" if i % 2 == 0 else "odd") / f"{i:02d}.png", (i * 10, 0, 0), (6, 6))
    splits = load_dataset("folder", tmp_path, image_size=8, seed=1)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (16, 2, 2)
    assert splits.shape == (3, 8, 8) and splits.num_classes == 2 and splits.class_names == ("even", "odd")
    assert splits.train.images.dtype == torch.float32
    assert 0 <= splits.train.images.min() <= splits.train.images.max() <= 1
    # Each example keeps its label: red level i*10 is even exactly when its label is "even".
    everything = [getattr(splits, s) for s in ("train", "valid", "test")]
    reds = torch.cat([s.images[:, 0, 0, 0] for s in everything]) * 255
    labels = torch.cat([s.labels for s in everything])
    assert sorted(reds.round().tolist()) == [i * 10.0 for i in range(20)]
    assert torch.equal(labels, (reds.round() / 10 % 2).long())
    again = load_dataset("folder", tmp_path, image_size=8, seed=1)
    other = load_dataset("folder", tmp_path, image_size=8, seed=2)
    assert torch.equal(again.test.images, splits.test.images)
    assert not torch.equal(other.train.images, splits.train.images)


def test_load_dataset_folder_grayscale_unlabelled(tmp_path):
    for i in range(3):
        save(tmp_path / f"{i}.jpg", GREEN, (10 + i, 10))
    splits = load_dataset("folder", tmp_path, image_size=5, grayscale=True, validation_size=1)
    assert splits.shape == (1, 5, 5) and splits.num_classes is None and splits.train.labels is None
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (2, 1, 0)


def test_empty_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError, match=r"no images found in .*\.png, \.jpg, \.jpeg") as info:
        load_dataset("folder", tmp_path)
    assert str(tmp_path) in str(info.value)


def test_unreadable_image(tmp_path):
    save(tmp_path / "good.png", RED, (4, 4))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    with pytest.raises(DataFormatError, match=r"cannot read image .*broken\.png"):
        load_dataset("folder", tmp_path)


def test_truncated_image(tmp_path):
    path = save(tmp_path / "cut.jpg", RED, (64, 64))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataFormatError, match=r"cannot read image .*cut\.jpg"):
        load_image_folder(tmp_path)


def test_mixed_layout_is_an_error(tmp_path):
    save(tmp_path / "loose.png", RED, (4, 4))
    save(tmp_path / "cats" / "boxed.png", RED, (4, 4))
    with pytest.raises(DataFormatError, match=r"mixes images directly in it .*'loose.png'.*'cats/boxed.png'"):
        load_dataset("folder", tmp_path)


def test_folder_static_binarisation(tmp_path):
    for i in range(10):
        save(tmp_path / f"{i}.png", (128, 128, 128), (4, 4))
    splits = load_dataset("folder", tmp_path, image_size=4, binarize="static")
    values = torch.cat([splits.train.images, splits.valid.images, splits.test.images])
    assert set(values.unique().tolist()) == {0.0, 1.0}
    assert abs(values.mean().item() - 128 / 255) < 0.1
