"""The UNet blocks' own forwards (CPU): with packed bf16 weights each fused block adds its
residuals in oneDNN and gives diffusers' outputs; on unpacked float32 weights they add as diffusers
does; a call they were not written for runs diffusers' own, and a block of another
kind is left as it is."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import AttnProcessor, SlicedAttnProcessor
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from engine_support import needs_bf16_packing

from paintbridge.engine.prepack import pack_weights, prepack_convolutions
from paintbridge.engine.residuals import (
    fuse_projection_residuals,
    fuse_residuals,
    fuse_resnets,
    fuse_transformer_blocks,
)
from paintbridge.engine.seamless import seamless

BF16 = torch.bfloat16


def close(got: torch.Tensor, expected: torch.Tensor) -> None:
    # bf16: the fused add rounds once where diffusers rounds the product, then the sum
    torch.testing.assert_close(got, expected, rtol=0.05, atol=0.05)


def small_unet(linear_projection: bool = False, dtype: torch.dtype = BF16) -> UNet2DConditionModel:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
        use_linear_projection=linear_projection,
    )
    return unet.to(dtype).eval()


def count(module: torch.nn.Module, kind: type) -> int:
    return sum(type(m) is kind for m in module.modules())


@needs_bf16_packing
@pytest.mark.parametrize("linear_projection", [False, True], ids=["1x1 conv", "linear"])
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_a_packed_and_fused_unet_gives_the_same_outputs(
    linear_projection: bool, layout: torch.memory_format
) -> None:
    dense = small_unet(linear_projection).to(memory_format=layout)
    packed = copy.deepcopy(dense)
    pack_weights(packed)
    counts = fuse_residuals(packed)
    assert counts == {
        "projections": count(packed, Transformer2DModel),
        "transformer blocks": count(packed, BasicTransformerBlock),
        "resnets": count(packed, ResnetBlock2D),
    }
    assert min(counts.values()) > 0
    assert fuse_residuals(packed) == dict.fromkeys(counts, 0)  # all done already
    torch.manual_seed(1)
    for batch, size in ((2, 16), (1, 24)):  # any batch and size
        sample = torch.randn(batch, 4, size, size).to(BF16).contiguous(memory_format=layout)
        text = torch.randn(batch, 7, 32).to(BF16)
        with torch.inference_mode():
            expected = dense(sample, 10, encoder_hidden_states=text).sample
            got = packed(sample, 10, encoder_hidden_states=text).sample
        close(got, expected)
    assert sum(p.numel() for p in packed.parameters()) == sum(p.numel() for p in dense.parameters())


def first(module: torch.nn.Module, kind: type) -> torch.nn.Module:
    return next(m for m in module.modules() if type(m) is kind)


@needs_bf16_packing
def test_a_fused_projection_adds_the_residual_in_either_layout() -> None:
    transformer = first(small_unet(), Transformer2DModel)
    dense = copy.deepcopy(transformer)
    assert fuse_projection_residuals(transformer) == 0  # its projection is not packed yet
    prepack_convolutions(transformer)
    assert fuse_projection_residuals(transformer) == 1
    hidden = torch.randn(2, 8 * 12, 32).to(BF16)
    residual = torch.randn(2, 32, 8, 12).to(BF16)
    with torch.inference_mode():
        expected = dense._get_output_for_continuous_inputs(hidden, residual, 2, 8, 12, 32)
        for layout in (torch.channels_last, torch.contiguous_format):  # fused; as diffusers does
            given = residual.contiguous(memory_format=layout)
            got = transformer._get_output_for_continuous_inputs(hidden, given, 2, 8, 12, 32)
            close(got, expected)
            if layout == torch.channels_last:  # not copied to the contiguous layout and back
                assert got.is_contiguous(memory_format=layout)


def packed_block() -> tuple[torch.nn.Module, torch.nn.Module]:
    block = first(small_unet(), BasicTransformerBlock)
    dense = copy.deepcopy(block)
    pack_weights(block)
    assert fuse_transformer_blocks(block) == 1
    return block, dense


def test_a_fused_transformer_block_adds_its_three_residuals() -> None:
    block, dense = packed_block()
    hidden, text = torch.randn(2, 40, 32).to(BF16), torch.randn(2, 7, 32).to(BF16)
    with torch.inference_mode():
        close(block(hidden, encoder_hidden_states=text), dense(hidden, encoder_hidden_states=text))
        close(block(hidden), dense(hidden))  # no text: cross-attention attends to itself
        assert not torch.equal(block(hidden), hidden)  # the attentions do something


def test_a_fused_transformer_block_runs_diffusers_forward_for_a_mask() -> None:
    block, dense = packed_block()
    hidden, text = torch.randn(2, 40, 32).to(BF16), torch.randn(2, 7, 32).to(BF16)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[:, 4:] = False  # the last text tokens hidden
    with torch.inference_mode():
        masked = block(hidden, encoder_hidden_states=text, encoder_attention_mask=mask)
        close(masked, dense(hidden, encoder_hidden_states=text, encoder_attention_mask=mask))
        unmasked = block(hidden, encoder_hidden_states=text)
    assert (masked - unmasked).abs().max() > 0.05  # the mask was applied, not dropped


def test_a_block_of_another_kind_stays_as_it_is() -> None:
    unet = small_unet()
    block = first(unet, BasicTransformerBlock)
    block.attn1.set_processor(AttnProcessor())  # not torch's SDPA: fused code would skip it
    pack_weights(unet)
    assert fuse_transformer_blocks(unet) == count(unet, BasicTransformerBlock) - 1
    assert "forward" not in vars(block)


@pytest.mark.parametrize(("channels_in", "channels_out"), [(32, 32), (32, 64)])
def test_a_fused_resnet_adds_its_shortcut(channels_in: int, channels_out: int) -> None:
    torch.manual_seed(0)
    resnet = ResnetBlock2D(
        in_channels=channels_in, out_channels=channels_out, temb_channels=16, groups=8
    )
    resnet = resnet.to(BF16).to(memory_format=torch.channels_last).eval()
    dense = copy.deepcopy(resnet)
    pack_weights(resnet)
    assert fuse_resnets(resnet) == 1 and fuse_resnets(resnet) == 0
    x = torch.randn(2, channels_in, 12, 10).to(BF16).contiguous(memory_format=torch.channels_last)
    temb = torch.randn(2, 16).to(BF16)
    same_temb = temb[:1].expand(2, 16)  # guidance: both halves of a step share a time step
    with torch.inference_mode():
        close(resnet(x, temb), dense(x, temb))
        close(resnet(x, same_temb), dense(x, same_temb))
        close(resnet(x, temb[:1]), dense(x, temb[:1]))  # one embedding for the whole batch
        close(resnet(x.contiguous(), temb), dense(x.contiguous(), temb))  # the other layout
        with seamless([resnet], "xy"), seamless([dense], "xy"):  # pads its own way: not fused
            close(resnet(x, temb), dense(x, temb))
    resnet.train()  # training: diffusers' forward, with its dropout
    assert resnet(x, temb).shape == dense(x, temb).shape


def test_a_resnet_with_its_own_scale_or_sampling_stays_as_it_is() -> None:
    scaled = ResnetBlock2D(in_channels=32, temb_channels=16, groups=8, output_scale_factor=2.0)
    sampling = ResnetBlock2D(in_channels=32, temb_channels=16, groups=8, up=True)
    for resnet in (scaled, sampling):
        resnet = resnet.to(BF16).eval()
        pack_weights(resnet)
        assert fuse_resnets(resnet) == 0


def test_guidance_halves_share_what_comes_before_the_prompt(monkeypatch) -> None:
    """With guidance both halves of the batch hold the same latents: the first resnet and the
    first self-attention run once for both, with the same result as running them twice."""
    import paintbridge.engine.residuals as residuals

    dense = small_unet()
    packed = copy.deepcopy(dense)
    pack_weights(packed)
    fuse_residuals(packed)
    torch.manual_seed(2)
    latents = torch.randn(1, 4, 16, 16).to(BF16).repeat(2, 1, 1, 1)
    text = torch.randn(2, 7, 32).to(BF16)  # the unconditional and the conditional prompt
    batches: list[int] = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording(query: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        batches.append(query.shape[0])
        return sdpa(query, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording)
    resnet_batches: list[int] = []
    first_resnet = packed.down_blocks[0].resnets[0]
    first_resnet.norm1.register_forward_hook(lambda m, a, out: resnet_batches.append(len(out)))
    with torch.inference_mode():
        shared = packed(latents, 10, encoder_hidden_states=text).sample
        first_pass = list(batches)
        assert resnet_batches == [1]
        different = torch.cat([latents[:1], torch.randn_like(latents[:1])])
        packed(different, 10, encoder_hidden_states=text)
        monkeypatch.setattr(residuals, "_on_one_half", lambda body, *args: body(*args))
        twice = packed(latents, 10, encoder_hidden_states=text).sample
        expected = dense(latents, 10, encoder_hidden_states=text).sample
    assert first_pass[0] == 1 and all(b == 2 for b in first_pass[1:])  # only the first is shared
    assert all(b == 2 for b in batches[len(first_pass) :][: len(first_pass)])  # halves differ
    torch.testing.assert_close(shared, twice, rtol=0, atol=0)
    close(shared, expected)
    assert not torch.equal(shared[0], shared[1])  # the prompts still part them


def test_an_unpacked_float32_unet_shares_the_halves_and_otherwise_adds_as_diffusers() -> None:
    """float32 is not packed: its blocks' forwards add as torch does, so their outputs are
    diffusers' to the bit, except where guidance's halves are shared: a batch of one may take
    other kernels, which round differently (about 1e-6 here; SD 1.5 at 512 px came out equal)."""
    import paintbridge.engine.residuals as residuals

    dense = small_unet(dtype=torch.float32)
    ours = copy.deepcopy(dense)
    counts = fuse_residuals(ours)
    assert counts == {
        "projections": 0,  # a projection gains only from packing
        "transformer blocks": count(ours, BasicTransformerBlock),
        "resnets": count(ours, ResnetBlock2D),
    }
    assert min(counts["transformer blocks"], counts["resnets"]) > 0
    batches: list[int] = []  # what the shareable parts were computed on
    one_half = residuals._on_one_half

    def recording(body: Any, module: object, hidden: torch.Tensor, *more: object) -> object:
        def counted(module: object, hidden: torch.Tensor, *more: object) -> object:
            batches.append(len(hidden))
            return body(module, hidden, *more)

        return one_half(counted, module, hidden, *more)

    torch.manual_seed(3)
    latents = torch.randn(1, 4, 16, 16).repeat(2, 1, 1, 1)  # guidance: equal halves
    text = torch.randn(2, 7, 32)
    with torch.inference_mode(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(residuals, "_on_one_half", recording)
        got = ours(latents, 10, encoder_hidden_states=text).sample
        torch.testing.assert_close(got, dense(latents, 10, encoder_hidden_states=text).sample)
        assert batches[0] == 1  # the halves were shared
        for sample in (torch.randn(2, 4, 16, 16), torch.randn(1, 4, 24, 24)):  # nothing shared
            batch_text = text[: len(sample)]
            got = ours(sample, 10, encoder_hidden_states=batch_text).sample
            expected = dense(sample, 10, encoder_hidden_states=batch_text).sample
            torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("packed", [True, False], ids=["bf16 packed", "float32"])
def test_attention_slicing_still_slices_a_fused_unet(packed: bool) -> None:
    """Low memory turns attention slicing on after the model loaded: the blocks then run
    diffusers' forward, through the sliced processors."""
    unet = small_unet(dtype=BF16 if packed else torch.float32)
    if packed:
        pack_weights(unet)
    fuse_residuals(unet)
    calls: list[int] = []
    sliced_call = SlicedAttnProcessor.__call__

    def counting(self: SlicedAttnProcessor, *args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        return sliced_call(self, *args, **kwargs)

    sample = torch.randn(2, 4, 16, 16).to(unet.dtype)
    text = torch.randn(2, 7, 32).to(unet.dtype)
    with torch.inference_mode(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(SlicedAttnProcessor, "__call__", counting)
        before = unet(sample, 10, encoder_hidden_states=text).sample
        assert not calls
        unet.set_attention_slice(1)
        sliced = unet(sample, 10, encoder_hidden_states=text).sample
        assert len(calls) == 2 * count(unet, BasicTransformerBlock)
        unet.set_attention_slice(None)  # slicing off: our forwards again
        calls.clear()
        again = unet(sample, 10, encoder_hidden_states=text).sample
        assert not calls
    close(sliced, before)
    torch.testing.assert_close(again, before, rtol=0, atol=0)
