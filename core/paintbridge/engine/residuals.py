"""The UNet's blocks with forwards of our own (CPU): residual adds done by oneDNN as it writes
each block's last product where the weights are packed, and guidance's shared work done once.

Every block of SD's UNet ends in `residual + layer(x)`; in diffusers that is one pass of the
packed layer (engine/prepack.py) and then another two over the activations: the add, and a
division by an output scale that is 1. oneDNN adds the residual while it writes the product
(its "binary add" post-op), so the block ends in one pass. Each function here gives a diffusers
block of the usual configuration a forward that does so, and leaves any other block as it is:

- `fuse_projection_residuals`: a Transformer2DModel's projection out. diffusers also copies the
  activations to torch's contiguous layout first, which made the next convolution reorder them
  back: at 64x64 latents the projection took 5.3 ms instead of 0.6.
- `fuse_transformer_blocks`: a BasicTransformerBlock's attention outputs and feed-forward output.
- `fuse_resnets`: a ResnetBlock2D's second convolution; where guidance's two halves share their
  time step, the time embedding joins the first convolution's bias instead of being added after.

With guidance, both halves of the batch are equal until the first cross-attention brings the
prompt in; the transformer blocks' and resnets' forwards then compute that part once for both
(`_on_one_half`): in SD 1.5, the first resnet and the first 4096-token self-attention. That
needs no packing, so the float32 UNet gets these two forwards too, with torch doing the adds as
diffusers does: the same result up to float32 rounding (a batch of one may take other kernels
than a batch of two; SD 1.5 at 512 px came out bit for bit).

A call these forwards were not written for (an attention mask, extra attention arguments,
attention slicing, training) runs diffusers' own forward. In bf16 with packed weights, rounding
differs from diffusers': the add happens before the product is rounded to bf16, not after.

Measured on the whole bf16 UNet forward at 512 px, 2 cores with AMX, alternating: 1.328 s ->
1.258 s with the linears packed and the projections fused; 1.232 s -> 1.196 s with the
transformer blocks and resnets fused too (bench/results/README.md). An Engine step (guidance on):
1.195 s -> 1.152 s with the halves' shared part computed once (12 steps each, alternating). In
float32 (an Intel Xeon with AVX-512 only, where float32 is the fastest), the halves shared: UNet
forward 6.12 -> 5.93 s (12 alternating calls each), Engine step 6.22 -> 6.00 s (12 steps each),
and at a busier hour 8.89 -> 7.22 s (24 steps each; every one of 8 rounds faster, 1.04-1.35x).
"""

from __future__ import annotations

from typing import Any

from paintbridge.engine.prepack import conv2d, convolves_packed, each, is_packed


def fuse_residuals(unet: Any) -> dict[str, int]:
    """All three; returns how many blocks of each kind now have a forward of ours. Only where
    prepack.pack_weights packed the weights first do they end in one oneDNN call (and only then
    is a projection changed at all); elsewhere they share guidance's halves and nothing else."""
    return {
        "projections": fuse_projection_residuals(unet),
        "transformer blocks": fuse_transformer_blocks(unet),
        "resnets": fuse_resnets(unet),
    }


def linear_plus(x: Any, residual: Any, linear: Any) -> Any:
    """`linear(x) + residual` in one oneDNN call (a packed linear, same-shaped contiguous
    residual), else as torch does it."""
    import torch

    if is_packed(linear.weight) and residual.is_contiguous() and residual.dim() == x.dim():
        pointwise = torch.ops.mkldnn._linear_pointwise.binary
        return pointwise(x, residual, linear.weight, linear.bias, "add")
    return linear(x) + residual


def conv_plus(x: Any, residual: Any, conv: Any) -> Any:
    """`conv(x) + residual` in one oneDNN call (a packed convolution as packed, channels-last
    residual and input), else as torch does it (and as seamless pads it)."""
    import torch

    channels_last = torch.channels_last
    if (
        convolves_packed(conv)
        and x.is_contiguous(memory_format=channels_last)
        and residual.is_contiguous(memory_format=channels_last)
    ):
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, residual, conv.weight, conv.bias, list(conv.padding), list(conv.stride),
            list(conv.dilation), conv.groups, "add", None, None, [], None,
        )  # fmt: skip
    return conv(x) + residual


def _on_one_half(body: Any, module: Any, hidden_states: Any, *more: Any) -> Any:
    """`body(module, hidden_states, *more)`, computed once for both halves of the batch where
    they are equal (every tensor's first half equals its second half, row for row).

    With guidance, the unconditional and the conditional half of a step start from the same
    latents, at the same time step, and stay equal until the first cross-attention brings the
    prompt in: in SD 1.5 that is the first resnet and the first self-attention at 64x64 latents
    (a 4096-token attention, 7% of the step), each done twice by diffusers for the same result.
    torch.equal stops at the first difference, so where the halves differ (every later block)
    the check costs microseconds."""
    import torch

    tensors = (hidden_states, *(t for t in more if t is not None))
    n = hidden_states.shape[0] // 2
    shared = (
        n > 0
        and hidden_states.shape[0] % 2 == 0
        and all(t.shape[0] == 2 * n for t in tensors)
        and all(torch.equal(t[:n], t[n:]) for t in tensors)
    )
    if not shared:
        return body(module, hidden_states, *more)
    half = body(module, hidden_states[:n], *(None if t is None else t[:n] for t in more))
    return torch.cat([half, half])


def _already(module: Any, name: str) -> bool:
    return name in vars(module)


# --- Transformer2DModel: projection out + residual ------------------------------------------


def fuse_projection_residuals(module: Any) -> int:
    """Every diffusers Transformer2DModel below `module` whose projection out is packed (a 1x1
    convolution, or a linear where the model projects linearly) ends with that projection and
    the residual in one oneDNN call, on the channels-last activations; returns how many. Where
    the residual is not channels-last, it ends as diffusers does."""
    return each(module, _projection_fusable, _fuse_projection)


def _projection_fusable(transformer: Any) -> bool:
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    if type(transformer) is not Transformer2DModel or not transformer.is_input_continuous:
        return False
    fused = _already(transformer, "_get_output_for_continuous_inputs")
    return is_packed(transformer.proj_out.weight) and not fused


def _fuse_projection(transformer: Any) -> None:
    import torch

    diffusers_output = transformer._get_output_for_continuous_inputs
    proj = transformer.proj_out

    def output(
        hidden_states: Any, residual: Any, batch_size: int, height: int, width: int, inner_dim: int
    ) -> Any:
        if not residual.is_contiguous(memory_format=torch.channels_last):
            return diffusers_output(hidden_states, residual, batch_size, height, width, inner_dim)
        if transformer.use_linear_projection:
            # (batch, pixels, channels) is the channels-last layout of (batch, channels, h, w)
            flat = residual.permute(0, 2, 3, 1).reshape(batch_size, height * width, -1)
            out = linear_plus(hidden_states, flat, proj)
            return out.reshape(batch_size, height, width, -1).permute(0, 3, 1, 2)
        image = hidden_states.reshape(batch_size, height, width, inner_dim).permute(0, 3, 1, 2)
        return conv_plus(image, residual, proj)

    transformer._get_output_for_continuous_inputs = output


# --- BasicTransformerBlock: attention outputs and feed-forward + residual -------------------


def fuse_transformer_blocks(module: Any) -> int:
    """Every diffusers BasicTransformerBlock below `module` of SD's kind (layer norms,
    self-attention then cross-attention, a feed-forward, attention by torch's SDPA) gets our
    forward, which adds its three residuals in oneDNN where their layers are packed; returns how
    many."""
    return each(module, _block_fusable, _fuse_block)


def _block_fusable(block: Any) -> bool:
    import torch
    from diffusers.models.attention import BasicTransformerBlock, FeedForward

    if type(block) is not BasicTransformerBlock or _already(block, "forward"):
        return False
    plain = (
        block.norm_type == "layer_norm"
        and block.pos_embed is None
        and not block.only_cross_attention
        and block._chunk_size is None
        and block.attn2 is not None
        and not hasattr(block, "fuser")  # GLIGEN
    )
    ff = block.ff
    feed_forward = (
        type(ff) is FeedForward and len(ff.net) == 3 and isinstance(ff.net[1], torch.nn.Dropout)
    )
    attentions = _attention_fusable(block.attn1) and _attention_fusable(block.attn2)
    return plain and feed_forward and attentions


def _attention_fusable(attn: Any) -> bool:
    from diffusers.models.attention_processor import AttnProcessor2_0

    return (
        type(attn.processor) is AttnProcessor2_0
        and attn.spatial_norm is None
        and attn.group_norm is None
        and attn.norm_q is None
        and attn.norm_k is None
        and not attn.norm_cross
        and not attn.residual_connection
        and attn.rescale_output_factor == 1
    )


def _fuse_block(block: Any) -> None:
    from diffusers.models.attention_processor import AttnProcessor2_0

    diffusers_forward = block.forward

    def forward(
        hidden_states: Any,
        attention_mask: Any = None,
        encoder_hidden_states: Any = None,
        encoder_attention_mask: Any = None,
        timestep: Any = None,
        cross_attention_kwargs: Any = None,
        class_labels: Any = None,
        added_cond_kwargs: Any = None,
    ) -> Any:
        extras = (attention_mask, encoder_attention_mask, timestep, class_labels, added_cond_kwargs)
        # attention slicing (low memory) swaps the processors after the fusing
        other_processor = not (
            type(block.attn1.processor) is AttnProcessor2_0
            and type(block.attn2.processor) is AttnProcessor2_0
        )
        if (
            block.training
            or other_processor
            or cross_attention_kwargs
            or any(x is not None for x in extras)
        ):
            return diffusers_forward(
                hidden_states,
                attention_mask=attention_mask,
                encoder_hidden_states=encoder_hidden_states,
                encoder_attention_mask=encoder_attention_mask,
                timestep=timestep,
                cross_attention_kwargs=cross_attention_kwargs,
                class_labels=class_labels,
                added_cond_kwargs=added_cond_kwargs,
            )
        hidden_states = _on_one_half(_self_attend, block, hidden_states)
        normed = block.norm2(hidden_states)
        context = normed if encoder_hidden_states is None else encoder_hidden_states
        hidden_states = _attend_plus(block.attn2, normed, context, hidden_states)
        ff = block.ff.net
        return linear_plus(ff[0](block.norm3(hidden_states)), hidden_states, ff[2])

    block.forward = forward


def _self_attend(block: Any, hidden_states: Any) -> Any:
    normed = block.norm1(hidden_states)
    return _attend_plus(block.attn1, normed, normed, hidden_states)


def _attend_plus(attn: Any, hidden_states: Any, context: Any, residual: Any) -> Any:
    """AttnProcessor2_0 without a mask, its output projection plus `residual` in one call."""
    import torch

    batch = hidden_states.shape[0]
    query, key, value = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
    head_dim = key.shape[-1] // attn.heads
    query, key, value = (
        t.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for t in (query, key, value)
    )
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value)
    out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim)
    return linear_plus(out, residual, attn.to_out[0])


# --- ResnetBlock2D: second convolution + shortcut -------------------------------------------


def fuse_resnets(module: Any) -> int:
    """Every diffusers ResnetBlock2D below `module` of SD's kind (no up- or downsampling inside,
    time embedding added, output scale 1) gets our forward, which adds its shortcut in oneDNN
    where its second convolution is packed; returns how many."""
    return each(module, _resnet_fusable, _fuse_resnet)


def _resnet_fusable(resnet: Any) -> bool:
    from diffusers.models.resnet import ResnetBlock2D

    return (
        type(resnet) is ResnetBlock2D
        and not _already(resnet, "forward")
        and resnet.upsample is None
        and resnet.downsample is None
        and resnet.time_embedding_norm == "default"
        and resnet.output_scale_factor == 1
    )


def _fuse_resnet(resnet: Any) -> None:
    diffusers_forward = resnet.forward

    def forward(input_tensor: Any, temb: Any, *args: Any, **kwargs: Any) -> Any:
        foreign_temb = resnet.time_emb_proj is None and temb is not None
        if resnet.training or args or kwargs or foreign_temb:
            return diffusers_forward(input_tensor, temb, *args, **kwargs)
        if resnet.time_emb_proj is not None:
            if not resnet.skip_time_act:
                temb = resnet.nonlinearity(temb)
            temb = resnet.time_emb_proj(temb)
        return _on_one_half(_resnet_body, resnet, input_tensor, temb)

    resnet.forward = forward


def _resnet_body(resnet: Any, input_tensor: Any, temb: Any) -> Any:
    hidden_states = resnet.nonlinearity(resnet.norm1(input_tensor))
    hidden_states = _conv_plus_time(hidden_states, temb, resnet.conv1)
    hidden_states = resnet.nonlinearity(resnet.norm2(hidden_states))
    shortcut = input_tensor
    if resnet.conv_shortcut is not None:
        shortcut = resnet.conv_shortcut(input_tensor)
    return conv_plus(hidden_states, shortcut, resnet.conv2)


def _conv_plus_time(x: Any, temb: Any, conv: Any) -> Any:
    """`conv(x) + temb` (one time embedding per image, by channel). Where every image has the
    same one, as with guidance's two halves of one step, the embedding joins the bias: no pass
    over the activations for the add."""
    if temb is None:
        return conv(x)
    if convolves_packed(conv) and conv.bias is not None and bool((temb == temb[:1]).all()):
        bias = conv.bias + temb[0]
        return conv2d(x, conv.weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return conv(x) + temb[:, :, None, None]
