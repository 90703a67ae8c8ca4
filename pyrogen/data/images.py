"""
Loading a folder of PNG/JPEG images as one array.

Every file whose name ends in ``.png``, ``.jpg`` or ``.jpeg`` (any case) under the folder,
searched recursively, is read with Pillow in sorted path order, converted to RGB or to one grey
channel, and resized to ``image_size x image_size`` with bilinear filtering (Pillow antialiases
when it shrinks). Aspect ratios are not preserved: crop beforehand if that matters.

Labels follow the ``ImageFolder`` convention: if every image sits in a subfolder, the name of
its top-level subfolder is its class, and the sorted class names are numbered ``0..K-1``; if
every image sits directly in the folder there are no labels. A mix of the two is ambiguous and
an error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pyrogen.data.files import DataFormatError

__all__ = ["IMAGE_EXTENSIONS", "find_images", "load_image_folder"]

#: File name endings (compared case-insensitively) read as images.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def find_images(folder: Path) -> list[Path]:
    """
    List the image files under ``folder``, recursively, sorted by relative path.

    :raises FileNotFoundError: if there are none, naming the folder and the extensions.
    """
    folder = Path(folder)
    paths = sorted(
        (p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
        key=lambda p: p.relative_to(folder).as_posix(),
    )
    if not paths:
        raise FileNotFoundError(
            f"no images found in {str(folder)!r} or its subfolders (looked for files ending in "
            f"{', '.join(IMAGE_EXTENSIONS)}, any case); put the images there, optionally in one "
            "subfolder per class"
        )
    return paths


def _class_labels(folder: Path, paths: list[Path]) -> tuple[np.ndarray | None, list[str]]:
    parts = [p.relative_to(folder).parts for p in paths]
    nested = [len(part) > 1 for part in parts]
    if not any(nested):
        return None, []
    if not all(nested):
        loose = paths[nested.index(False)]
        boxed = paths[nested.index(True)]
        raise DataFormatError(
            f"{str(folder)!r} mixes images directly in it (e.g. {loose.name!r}) with images in class "
            f"subfolders (e.g. {boxed.relative_to(folder).as_posix()!r}); put every image in a class "
            "subfolder (labelled data) or none (unlabelled data)"
        )
    classes = sorted({part[0] for part in parts})
    index = {name: i for i, name in enumerate(classes)}
    return np.array([index[part[0]] for part in parts], dtype=np.int64), classes


def _read_image(path: Path, image_size: int, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image = image.convert(mode)  # convert() forces a full decode, so damage shows here
            image = image.resize((image_size, image_size), Image.BILINEAR)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataFormatError(f"cannot read image {str(path)!r}: {type(e).__name__}: {e}") from e
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def load_image_folder(
    folder: Path, image_size: int = 64, grayscale: bool = False
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """
    Read every image under ``folder``.

    :param pathlib.Path folder: the folder, searched recursively.
    :param int image_size: output height and width in pixels.
    :param bool grayscale: convert to one grey channel (Pillow mode ``"L"``) instead of RGB.
    :returns: ``uint8`` images of shape ``(N, C, image_size, image_size)`` with ``C`` 1 or 3,
        ``int64`` labels of shape ``(N,)`` or ``None``, and the sorted class names (empty when
        unlabelled).
    :raises FileNotFoundError: if the folder holds no images.
    :raises DataFormatError: naming the file if an image cannot be decoded, or if images lie
        both directly in the folder and in subfolders.
    """
    folder = Path(folder)
    paths = find_images(folder)
    labels, classes = _class_labels(folder, paths)
    mode = "L" if grayscale else "RGB"
    channels = 1 if grayscale else 3
    images = np.empty((len(paths), channels, image_size, image_size), dtype=np.uint8)
    for i, path in enumerate(paths):
        images[i] = _read_image(path, image_size, mode)
    return images, labels, classes
