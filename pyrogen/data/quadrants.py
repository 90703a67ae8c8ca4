r"""
The quadrant-completion task of Sohn et al. (2015): given 1, 2 or 3 quadrants
of an image, predict the rest.

The visible quadrants follow Pyro's CVAE example (so its figures compare):

- 1 quadrant: the bottom-left one;
- 2 quadrants: the left half;
- 3 quadrants: everything but the bottom-right quadrant.

The conditioning input is the image with the hidden pixels set to ``-1``
(a value no pixel takes, so a network can tell "hidden" from "black"); the
target is the hidden pixels, scored by a likelihood masked to them.

**References**

[1] K. Sohn, H. Lee, X. Yan, "Learning Structured Output Representation using
Deep Conditional Generative Models", NeurIPS 2015.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: the value of hidden pixels in the conditioning input
HIDDEN_VALUE = -1.0


def check_quadrants(num_visible: object) -> int:
    """Check that ``num_visible`` is 1, 2 or 3 and return it as an int."""
    if isinstance(num_visible, bool) or num_visible not in (1, 2, 3):
        raise ValueError(f"quadrants must be 1, 2 or 3 visible quadrants, got {num_visible!r}")
    return int(num_visible)


def visible_mask(data_shape: Sequence[int], num_visible: int) -> torch.Tensor:
    """
    A boolean tensor of shape ``data_shape`` ``(C, H, W)``, True on the visible
    pixels of ``num_visible`` quadrants (the same for every channel).
    """
    num_visible = check_quadrants(num_visible)
    data_shape = tuple(int(d) for d in data_shape)
    if len(data_shape) != 3 or min(data_shape[1:]) < 2:
        raise ValueError(f"quadrants need images of shape (C, H, W) with H, W >= 2, got {data_shape}")
    _, h, w = data_shape
    visible = torch.zeros(data_shape, dtype=torch.bool)
    visible[:, h // 2:, : w // 2] = True  # bottom-left
    if num_visible >= 2:
        visible[:, :, : w // 2] = True  # the left half
    if num_visible == 3:
        visible[:, : h // 2, :] = True  # and the top half
    return visible


def condition_on_quadrants(x: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """The conditioning input: ``x`` where ``visible``, :data:`HIDDEN_VALUE` elsewhere."""
    return torch.where(visible, x, torch.full_like(x, HIDDEN_VALUE))


__all__ = ["HIDDEN_VALUE", "check_quadrants", "condition_on_quadrants", "visible_mask"]
