"""The bf16 UNet's weights packed once for oneDNN, not on every call (CPU).

On the CPU, torch hands oneDNN each convolution's weight in torch's own layout and oneDNN
reorders it into its blocked layout on every call. Where the image is small and the channels
many, that reorder costs more than the arithmetic: in SD 1.5's UNet at 512 px, a 3x3
convolution from 2560 to 1280 channels on 8x8 latents took 24 ms, 5 ms with its weight reordered
beforehand (bf16, 2 cores with AMX). `prepack_convolutions` reorders every weight when the model
loads and calls oneDNN's convolution with it; the packed weight replaces the dense one, so the
weights take no more memory, and the outputs are the same.

`fuse_geglu` does the same for the transformer blocks' GEGLU feed-forward input, `value *
gelu(gate)` with both halves from one linear: as two packed linears, the gate's with its GELU and
the value's with the multiply by the gate done by oneDNN as the product is written, where torch
made four passes over the largest activations (bias copy, chunk, GELU, multiply).

`pack_linears` packs the other linear layers (engine/residuals.py then adds residuals with them).

Measured on the whole bf16 UNet forward at 512 px, alternating (bench/results/README.md):
1.72 s as loaded, 1.61 s with packed convolutions, 1.53 s with GEGLU fused too. In float32, and
for the VAE, packing gained nothing, so the engine packs only the bf16 UNet. Tried again on an
Intel Xeon without native bf16 (AVX-512 only), float32 with residuals.py too: a bare UNet call
gained 4.5% (6.96 -> 6.63 s), but Engine steps did not (6.93 s packed vs 6.54 s not, medians
of 12 alternating steps; 7.00 vs 6.80 of 24), likely because the engine's allocator
(allocator.py) already spares the page faults that fewer intermediates saved the bare call.

`pack_weights` does all of it. `conv2d` convolves with either kind of weight: seamless (circular
padding) calls it too.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def pack_weights(module: Any) -> dict[str, int]:
    """Everything below (GEGLUs first: one is fused from its dense weight); returns how many of
    each were changed."""
    return {
        "GEGLUs": fuse_geglu(module),
        "linears": pack_linears(module),
        "convolutions": prepack_convolutions(module),
    }


def is_packed(weight: Any) -> bool:
    return bool(getattr(weight, "is_mkldnn", False))


def conv2d(
    input: Any,
    weight: Any,
    bias: Any,
    stride: tuple[int, ...],
    padding: tuple[int, ...] | int,
    dilation: tuple[int, ...],
    groups: int,
) -> Any:
    """torch's conv2d, also for a weight `prepack_convolutions` packed (zero padding only)."""
    import torch

    if not is_packed(weight):
        return torch.nn.functional.conv2d(input, weight, bias, stride, padding, dilation, groups)
    # mkldnn's convolution takes padding as a list of two: F.conv2d also takes an int
    pad = [padding, padding] if isinstance(padding, int) else list(padding)
    return torch.ops.mkldnn._convolution_pointwise(
        input, weight, bias, pad, list(stride), list(dilation), groups, "none", [], ""
    )


def prepack_convolutions(module: Any) -> int:
    """Pack the weight of every plain zero-padded Conv2d below `module`, in place.

    Returns how many were packed: 0 where oneDNN is missing or refuses (the convolutions then
    stay as they were, and the model runs as before)."""
    return each(module, _packable, _pack)


def _packable(conv: Any) -> bool:
    import torch

    # a subclass may have its own forward that reads the dense weight
    if type(conv) is not torch.nn.Conv2d or conv.padding_mode != "zeros":
        return False
    return not isinstance(conv.padding, str) and not is_packed(conv.weight)  # "same"/"valid"


def each(module: Any, eligible: Any, change: Any) -> int:
    """`change` every submodule of `module` that is `eligible`; returns how many. Stops at the
    first refusal (this torch's oneDNN has no such kernel), which leaves that one as it was."""
    import torch

    if not torch.backends.mkldnn.is_available():
        return 0
    changed = 0
    with torch.no_grad():
        for sub in module.modules():
            if not eligible(sub):
                continue
            try:
                change(sub)
            except RuntimeError as exc:
                log.info("%s stays as it was (%s)", type(sub).__name__, exc)
                break
            changed += 1
    return changed


def _pack(conv: Any) -> None:
    import torch

    weight = torch._C._nn.mkldnn_reorder_conv2d_weight(
        conv.weight.detach().to_mkldnn(),
        list(conv.padding),
        list(conv.stride),
        list(conv.dilation),
        conv.groups,
    )
    del conv.weight
    conv.weight = torch.nn.Parameter(weight, requires_grad=False)
    conv._conv_forward = _packed_forward(conv)


def _packed_forward(conv: Any) -> Any:
    """A `_conv_forward` for `conv` (Conv2d.forward calls it with the module's own weight)."""

    def conv_forward(input: Any, weight: Any, bias: Any) -> Any:
        return conv2d(input, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)

    conv_forward.packed = True  # type: ignore[attr-defined]
    return conv_forward


def convolves_packed(conv: Any) -> bool:
    """Whether `conv` runs as `prepack_convolutions` left it (seamless, for one, pads it in its
    own `_conv_forward`)."""
    return getattr(conv._conv_forward, "packed", False) is True


def fuse_geglu(module: Any) -> int:
    """Every diffusers GEGLU below `module` as two packed oneDNN linears (in place); returns how
    many. Their output differs from torch's by bf16 rounding: GELU runs on the float product
    before it is rounded to bf16, not after."""
    return each(module, _fusable, _fuse)


def _fusable(geglu: Any) -> bool:
    import torch
    from diffusers.models.activations import GEGLU

    # a fused one has no `proj` left; a packed one has no dense weight to split
    proj = getattr(geglu, "proj", None)
    return type(geglu) is GEGLU and type(proj) is torch.nn.Linear and not is_packed(proj.weight)


def _fuse(geglu: Any) -> None:
    import torch

    proj = geglu.proj
    value_weight, gate_weight = proj.weight.detach().chunk(2)
    value_bias, gate_bias = (None, None) if proj.bias is None else proj.bias.detach().chunk(2)
    packed = {
        "value_weight": torch.ops.mkldnn._reorder_linear_weight(value_weight.contiguous(), None),
        "gate_weight": torch.ops.mkldnn._reorder_linear_weight(gate_weight.contiguous(), None),
        "value_bias": None if value_bias is None else value_bias.clone(),
        "gate_bias": None if gate_bias is None else gate_bias.clone(),
    }
    del geglu.proj
    for name, tensor in packed.items():
        geglu.register_parameter(
            name, None if tensor is None else torch.nn.Parameter(tensor, requires_grad=False)
        )
    geglu.forward = _fused_forward(geglu)


def _fused_forward(geglu: Any) -> Any:
    import torch

    linear = torch.ops.mkldnn._linear_pointwise

    def forward(hidden_states: Any, *args: Any, **kwargs: Any) -> Any:
        gate = linear.default(hidden_states, geglu.gate_weight, geglu.gate_bias, "gelu", [], "none")
        return linear.binary(hidden_states, gate, geglu.value_weight, geglu.value_bias, "mul")

    return forward


def pack_linears(module: Any) -> int:
    """Pack the weight of every plain Linear below `module` for oneDNN, in place; returns how
    many."""
    return each(module, _linear_packable, _pack_linear)


def _linear_packable(linear: Any) -> bool:
    import torch

    return type(linear) is torch.nn.Linear and not is_packed(linear.weight)


def _pack_linear(linear: Any) -> None:
    import torch

    weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach().contiguous(), None)
    del linear.weight
    linear.weight = torch.nn.Parameter(weight, requires_grad=False)
    pointwise = torch.ops.mkldnn._linear_pointwise.default
    linear.forward = lambda input: pointwise(input, linear.weight, linear.bias, "none", [], "")
