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

Measured on the whole bf16 UNet forward at 512 px, alternating (bench/results/README.md):
1.72 s as loaded, 1.61 s with packed convolutions, 1.53 s with GEGLU fused too; later, on a
quieter machine, 1.305 s -> 1.251 s with the linears packed and the projections fused. In float32,
and for the VAE, packing gained nothing, so the engine packs only the bf16 UNet.

`pack_linears` packs the other linear layers, and `fuse_projection_residuals` ends each
transformer (its projection out, plus the residual) in one oneDNN call on the channels-last
activations, where diffusers first copied them to torch's contiguous layout, which made the
next convolution reorder them back (at 64x64 latents: 5.3 ms for the projection instead of 0.6).

`pack_unet` does all of it. `conv2d` convolves with either kind of weight: seamless (circular
padding) calls it too.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def pack_unet(unet: Any) -> dict[str, int]:
    """Everything below, in the order it needs (a GEGLU is fused from its dense weight, and a
    projection is fused once packed); returns how many of each were changed."""
    return {
        "GEGLUs": fuse_geglu(unet),
        "linears": pack_linears(unet),
        "convolutions": prepack_convolutions(unet),
        "projections": fuse_projection_residuals(unet),
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
    return _each(module, _packable, _pack)


def _packable(conv: Any) -> bool:
    import torch

    # a subclass may have its own forward that reads the dense weight
    if type(conv) is not torch.nn.Conv2d or conv.padding_mode != "zeros":
        return False
    return not isinstance(conv.padding, str) and not is_packed(conv.weight)  # "same"/"valid"


def _each(module: Any, eligible: Any, change: Any) -> int:
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

    return conv_forward


def fuse_geglu(module: Any) -> int:
    """Every diffusers GEGLU below `module` as two packed oneDNN linears (in place); returns how
    many. Their output differs from torch's by bf16 rounding: GELU runs on the float product
    before it is rounded to bf16, not after."""
    return _each(module, _fusable, _fuse)


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
    return _each(module, _linear_packable, _pack_linear)


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


def fuse_projection_residuals(module: Any) -> int:
    """Every diffusers Transformer2DModel below `module` whose projection out is packed (a 1x1
    convolution, or a linear where the model projects linearly) ends with that projection and
    the residual added in one oneDNN call, on the channels-last activations; returns how many.
    Where the residual is not channels-last, it ends as diffusers does."""
    return _each(module, _projection_fusable, _fuse_projection)


def _projection_fusable(transformer: Any) -> bool:
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    if type(transformer) is not Transformer2DModel or not transformer.is_input_continuous:
        return False
    already = "_get_output_for_continuous_inputs" in vars(transformer)
    return is_packed(transformer.proj_out.weight) and not already


def _fuse_projection(transformer: Any) -> None:
    import torch

    diffusers_output = transformer._get_output_for_continuous_inputs
    proj = transformer.proj_out
    mkldnn = torch.ops.mkldnn

    def output(
        hidden_states: Any, residual: Any, batch_size: int, height: int, width: int, inner_dim: int
    ) -> Any:
        if not residual.is_contiguous(memory_format=torch.channels_last):
            return diffusers_output(hidden_states, residual, batch_size, height, width, inner_dim)
        if transformer.use_linear_projection:
            # (batch, pixels, channels) is the channels-last layout of (batch, channels, h, w)
            flat = residual.permute(0, 2, 3, 1).reshape(batch_size, height * width, -1)
            weight, bias = proj.weight, proj.bias
            out = mkldnn._linear_pointwise.binary(hidden_states, flat, weight, bias, "add")
            return out.reshape(batch_size, height, width, -1).permute(0, 3, 1, 2)
        image = hidden_states.reshape(batch_size, height, width, inner_dim).permute(0, 3, 1, 2)
        return mkldnn._convolution_pointwise.binary(
            image, residual, proj.weight, proj.bias, list(proj.padding), list(proj.stride),
            list(proj.dilation), proj.groups, "add", None, None, [], None,
        )  # fmt: skip

    transformer._get_output_for_continuous_inputs = output
