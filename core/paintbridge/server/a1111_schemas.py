"""The AUTOMATIC1111 web UI API's bodies, as its clients send and read them.

Unlike the v1 protocol these are lenient, as the A1111 server is: numbers may come as strings
or floats (`"seed": -1.0`), flags as 0/1, `null` means the field's default, and any field not
listed here is accepted and ignored (it is named in the answer's `info.ignored`). Defaults
follow A1111 where paintbridge has the same notion, and the model's preset where it does not
(steps, cfg_scale, width, height: null).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "A1111Model",
    "Img2ImgBody",
    "ImagesAnswer",
    "ProgressAnswer",
    "ProgressState",
    "SamplerItem",
    "SchedulerItem",
    "Txt2ImgBody",
    "UpscalerItem",
]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _null_is_the_default(cls, data: Any) -> Any:
        """A1111 makes every field optional: `null` for one of its fields means its default."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None or k not in cls.model_fields}
        return data


class Txt2ImgBody(_Lenient):
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = Field(default=-1, description="-1: random; the seed used is in `info`")
    steps: int | None = Field(default=None, description="null: the model's default")
    cfg_scale: float | None = Field(default=None, description="null: the model's default")
    width: int | None = Field(default=None, description="null: the model's native size")
    height: int | None = None
    batch_size: int = 1
    n_iter: int = 1
    sampler_name: str | None = Field(default=None, description="`Euler a`, `DPM++ 2M`...")
    sampler_index: str | None = Field(default=None, description="older name of sampler_name")
    scheduler: str | None = Field(default=None, description="`Automatic`, `Karras`...")
    tiling: bool = Field(default=False, description="seamless in x and y")
    override_settings: dict[str, Any] = Field(
        default_factory=dict, description="only `sd_model_checkpoint` is used"
    )
    send_images: bool = Field(default=True, description="false: `images` is empty, as in A1111")
    save_images: bool = Field(default=False, description="ignored: the history keeps every image")


class Img2ImgBody(Txt2ImgBody):
    init_images: list[str] = Field(description="base64 PNG/JPEG/WebP, or data: URLs; one used")
    denoising_strength: float = 0.75
    resize_mode: int = Field(default=0, description="only 0 (just resize) is supported")
    mask: str | None = Field(default=None, description="white = repaint; or alpha")
    mask_blur: float = 4
    inpainting_fill: int = Field(default=0, description="ignored (noted in info)")
    inpaint_full_res: bool = Field(default=False, description="repaint a crop around the mask")
    inpaint_full_res_padding: int = 32
    inpainting_mask_invert: int = Field(default=0, description="1: repaint the black part")

    @field_validator("mask", mode="before")
    @classmethod
    def _empty_mask_is_none(cls, value: Any) -> Any:
        """A1111 decodes the mask only when it is truthy: `""` means img2img, not inpaint."""
        return None if value == "" else value


class ImagesAnswer(BaseModel):
    images: list[str] = Field(description="base64 PNG files, no data: prefix")
    parameters: dict[str, Any]
    info: str = Field(description="a JSON object as a string: seed, all_seeds, ...")


class ProgressState(BaseModel):
    skipped: bool = False
    interrupted: bool = False
    job: str = ""
    job_count: int = 0
    job_timestamp: str = "0"
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0


class ProgressAnswer(BaseModel):
    progress: float = Field(description="0..1 of the running job")
    eta_relative: float = Field(description="seconds left, estimated")
    state: ProgressState
    current_image: str | None = Field(default=None, description="always null: no previews")
    textinfo: str | None = None


class A1111Model(BaseModel):
    title: str
    model_name: str
    hash: str | None = None
    sha256: str | None = None
    filename: str
    config: str | None = None


class SamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, Any] = Field(default_factory=dict)


class SchedulerItem(BaseModel):
    name: str
    label: str
    aliases: list[str] | None = None
    default_rho: float = -1
    need_inner_model: bool = False


class UpscalerItem(BaseModel):
    name: str
    model_name: str | None = None
    model_path: str | None = None
    model_url: str | None = None
    scale: float = 4
