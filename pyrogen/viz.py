"""Picture grids of images, written with matplotlib."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch


def image_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """
    Tile a batch of images ``(N, C, H, W)`` with values in [0, 1] into one
    ``(rows, cols, 3)`` float array, ``nrow`` images per row (default: square).
    """
    if images.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    images = images.detach().float().clamp(0, 1).cpu()
    n, c, h, w = images.shape
    if c not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {c}")
    if c == 1:
        images = images.expand(n, 3, h, w)
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = np.ones((rows * (h + padding) + padding, nrow * (w + padding) + padding, 3), np.float32)
    for i, image in enumerate(images.permute(0, 2, 3, 1).numpy()):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top : top + h, left : left + w] = image
    return grid


def save_image_grid(
    images: torch.Tensor, path: str | os.PathLike, nrow: int | None = None, scale: int | None = None
) -> Path:
    """
    Save a grid of ``images`` as a PNG. Small images are enlarged by an
    integer ``scale`` (default: to about 32 pixels a side) so they can be seen.
    """
    import matplotlib.image

    grid = image_grid(images, nrow)
    scale = scale or max(1, 32 // images.shape[-1])
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    from pyrogen.files import atomic_write

    path = Path(path)
    kind = path.suffix[1:].lower() or "png"
    return atomic_write(path, lambda f: matplotlib.image.imsave(f, grid, format=kind))
