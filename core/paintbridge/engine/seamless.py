"""Seamless (tileable) images: every 2-D convolution pads circularly along the tiled axes.

The image then wraps around like a torus: its right edge continues its left edge (x), its bottom
edge continues its top (y). Padding is asymmetric: circular on a tiled axis, zeros on the other,
as the model was trained. `seamless(modules, axes)` changes the convolutions for the duration of
a `with` block and puts every one back exactly as it was, also when the block raises.

Two more things would pad with zeros or cut the image apart, and are changed for the block too:

- diffusers' `Downsample2D` with `padding=0` (the VAE encoder's, for img2img and inpaint) pads
  the right and bottom edges itself (`F.pad(x, (0, 1, 0, 1))`) before its unpadded convolution.
  Within the block it does not; its convolution pads the same edges, circularly on tiled axes.
- a VAE with tiling on (low_memory) decodes and encodes tile by tile, and wraps only within a
  tile. Within the block it works on the whole image at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

_MISSING = object()


class _PadsInConv:
    """`Downsample2D.padding` within the block: not 0, so its forward does not pad itself (it
    pads only when `padding == 0`); its convolution pads instead (`_edge_padded_conv_forward`)."""

    def __repr__(self) -> str:
        return "<padded by paintbridge.seamless>"


_PADS_IN_CONV = _PadsInConv()


def _padded_conv_forward(conv: Any, axes: str) -> Callable[[Any, Any, Any], Any]:
    """A `_conv_forward` for `conv` that pads itself (circular on `axes`) and convolves with 0."""
    pad_y, pad_x = conv.padding
    return _conv_forward_padding(conv, axes, (pad_x, pad_x), (pad_y, pad_y))


def _edge_padded_conv_forward(conv: Any, axes: str) -> Callable[[Any, Any, Any], Any]:
    """A `_conv_forward` for a Downsample2D's unpadded `conv`: pads one pixel right and bottom
    as Downsample2D does, circular on `axes` (the first column or row again), else zeros."""
    return _conv_forward_padding(conv, axes, (0, 1), (0, 1))


def _conv_forward_padding(
    conv: Any, axes: str, pad_x: tuple[int, int], pad_y: tuple[int, int]
) -> Callable[[Any, Any, Any], Any]:
    import torch.nn.functional as F

    from paintbridge.engine.prepack import conv2d

    x_mode = "circular" if "x" in axes else "constant"
    y_mode = "circular" if "y" in axes else "constant"

    def conv_forward(input: Any, weight: Any, bias: Any) -> Any:
        padded = F.pad(input, (*pad_x, 0, 0), mode=x_mode)
        padded = F.pad(padded, (0, 0, *pad_y), mode=y_mode)
        return conv2d(padded, weight, bias, conv.stride, 0, conv.dilation, conv.groups)

    return conv_forward


def _modules_below(modules: Iterable[Any]) -> Iterator[Any]:
    """Every module below `modules`, once each."""
    seen: set[int] = set()
    for root in modules:
        if root is None:
            continue
        for module in root.modules():
            if id(module) not in seen:
                seen.add(id(module))
                yield module


def _padded_convs(modules: list[Any]) -> Iterator[Any]:
    """Every Conv2d that pads (a 1x1 or unpadded convolution is unaffected)."""
    import torch

    for module in modules:
        if isinstance(module, torch.nn.Conv2d) and isinstance(module.padding, tuple):
            if any(module.padding):
                yield module


def _self_padding_downsamplers(modules: list[Any]) -> Iterator[Any]:
    """Every diffusers Downsample2D that pads its input itself (padding 0, a convolution)."""
    import torch
    from diffusers.models.downsampling import Downsample2D

    for module in modules:
        if isinstance(module, Downsample2D) and module.use_conv and module.padding == 0:
            if isinstance(module.conv, torch.nn.Conv2d) and not any(module.conv.padding):
                yield module


@contextmanager
def _replaced(obj: Any, name: str, value: Any) -> Iterator[None]:
    """`obj.name = value` within the block; then exactly as before (absent if it was)."""
    original = obj.__dict__.get(name, _MISSING)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if original is _MISSING:
            delattr(obj, name)
        else:
            setattr(obj, name, original)


@contextmanager
def seamless(modules: Iterable[Any], axes: str) -> Iterator[int]:
    """Within the block, the convolutions of `modules` wrap around along `axes` (x, y or xy),
    and a VAE among them encodes and decodes without tiling.

    `axes == "none"` changes nothing. Yields how many convolutions were changed.
    """
    if axes not in ("none", "x", "y", "xy"):
        raise ValueError(f"`axes` must be none, x, y or xy, got {axes!r}")
    if axes == "none":
        yield 0
        return
    below = list(_modules_below(modules))
    with ExitStack() as stack:
        changed = 0
        for conv in _padded_convs(below):
            stack.enter_context(_replaced(conv, "_conv_forward", _padded_conv_forward(conv, axes)))
            changed += 1
        for down in _self_padding_downsamplers(below):
            stack.enter_context(_replaced(down, "padding", _PADS_IN_CONV))
            conv_forward = _edge_padded_conv_forward(down.conv, axes)
            stack.enter_context(_replaced(down.conv, "_conv_forward", conv_forward))
            changed += 1
        for module in below:
            if getattr(module, "use_tiling", None) is True:  # diffusers' VAEs
                stack.enter_context(_replaced(module, "use_tiling", False))
        yield changed
