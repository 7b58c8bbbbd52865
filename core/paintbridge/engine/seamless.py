"""Seamless (tileable) images: every 2-D convolution pads circularly along the tiled axes.

The image then wraps around like a torus: its right edge continues its left edge (x), its bottom
edge continues its top (y). Padding is asymmetric: circular on a tiled axis, zeros on the other,
as the model was trained. `seamless(modules, axes)` changes the convolutions for the duration of
a `with` block and puts every one back exactly as it was, also when the block raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

_MISSING = object()


def _padded_conv_forward(conv: Any, axes: str) -> Callable[[Any, Any, Any], Any]:
    """A `_conv_forward` for `conv` that pads itself (circular on `axes`) and convolves with 0."""
    import torch.nn.functional as F

    from paintbridge.engine.prepack import conv2d

    pad_y, pad_x = conv.padding
    x_mode = "circular" if "x" in axes else "constant"
    y_mode = "circular" if "y" in axes else "constant"

    def conv_forward(input: Any, weight: Any, bias: Any) -> Any:
        padded = F.pad(input, (pad_x, pad_x, 0, 0), mode=x_mode)
        padded = F.pad(padded, (0, 0, pad_y, pad_y), mode=y_mode)
        return conv2d(padded, weight, bias, conv.stride, 0, conv.dilation, conv.groups)

    return conv_forward


def _padded_convs(modules: Iterable[Any]) -> Iterator[Any]:
    """Every Conv2d below `modules` that pads (a 1x1 or unpadded convolution is unaffected)."""
    import torch

    seen: set[int] = set()
    for root in modules:
        if root is None:
            continue
        for module in root.modules():
            if not isinstance(module, torch.nn.Conv2d) or id(module) in seen:
                continue
            seen.add(id(module))
            if isinstance(module.padding, tuple) and any(module.padding):
                yield module


@contextmanager
def seamless(modules: Iterable[Any], axes: str) -> Iterator[int]:
    """Within the block, the convolutions of `modules` wrap around along `axes` (x, y or xy).

    `axes == "none"` changes nothing. Yields how many convolutions were changed.
    """
    if axes not in ("none", "x", "y", "xy"):
        raise ValueError(f"`axes` must be none, x, y or xy, got {axes!r}")
    if axes == "none":
        yield 0
        return
    saved: list[tuple[Any, Any]] = []
    try:
        for conv in _padded_convs(modules):
            saved.append((conv, conv.__dict__.get("_conv_forward", _MISSING)))
            conv._conv_forward = _padded_conv_forward(conv, axes)
        yield len(saved)
    finally:
        for conv, original in reversed(saved):
            if original is _MISSING:
                del conv._conv_forward
            else:
                conv._conv_forward = original
