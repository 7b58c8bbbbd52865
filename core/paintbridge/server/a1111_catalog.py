"""The A1111 routes that describe the server instead of generating: lists, flags, memory and
PNG info. Clients probe several of them when they connect (SillyTavern, Forge front ends,
A1111 API wrappers), and some give up on the first 404, so every list A1111 serves is here,
empty where paintbridge has no such thing.
"""

from __future__ import annotations

import io
import os
import sys
from typing import Any

from fastapi import APIRouter, Request
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict

from paintbridge import pngmeta
from paintbridge.errors import InvalidRequest
from paintbridge.imageops import unreadable_reason
from paintbridge.server import a1111_convert as conv
from paintbridge.server.a1111_schemas import SamplerItem, SchedulerItem, UpscalerItem

__all__ = ["router"]


class PngInfoBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    image: str = ""


def router() -> APIRouter:
    router = APIRouter()

    @router.get("/samplers", response_model=list[SamplerItem])
    def samplers() -> list[SamplerItem]:
        """The A1111 sampler names this server maps to its schedulers."""
        return [SamplerItem(name=name, aliases=[]) for name in conv.A1111_SAMPLERS]

    @router.get("/schedulers", response_model=list[SchedulerItem])
    def schedulers() -> list[SchedulerItem]:
        return [SchedulerItem(name=n, label=label) for n, label in conv.A1111_SCHEDULERS.items()]

    @router.get("/upscalers", response_model=list[UpscalerItem])
    def upscalers() -> list[UpscalerItem]:
        """Only A1111's "None": paintbridge has no upscalers."""
        return [UpscalerItem(name="None")]

    # Things paintbridge does not have (yet): A1111's empty answers.
    for path in (
        "/latent-upscale-modes",  # SillyTavern fails its upscaler list without it
        "/loras",
        "/sd-vae",
        "/sd-modules",
        "/hypernetworks",
        "/face-restorers",
        "/realesrgan-models",
        "/prompt-styles",
        "/extensions",
        "/script-info",
    ):
        router.add_api_route(path, _empty_list, methods=["GET"])

    @router.get("/embeddings")
    def embeddings() -> dict[str, Any]:
        return {"loaded": {}, "skipped": {}}

    @router.get("/scripts")
    def scripts() -> dict[str, list[str]]:
        """No scripts: `script_name` and `alwayson_scripts` are ignored (the answer's info says
        so)."""
        return {"txt2img": [], "img2img": []}

    @router.get("/cmd-flags")
    def cmd_flags(request: Request) -> dict[str, Any]:
        """The few A1111 command-line flags that describe this server."""
        settings = request.app.state.runtime.settings
        return {
            "api": True,
            "nowebui": True,
            "listen": settings.host not in ("127.0.0.1", "::1", "localhost"),
            "port": settings.port,
        }

    @router.get("/memory")
    def memory() -> dict[str, Any]:
        """RAM and, on an NVIDIA/AMD GPU, its memory, in bytes as A1111 reports them."""
        return {"ram": _ram(), "cuda": _cuda()}

    @router.post("/png-info")
    def png_info(body: PngInfoBody, request: Request) -> dict[str, Any]:
        """A PNG's text chunks: `info` is its A1111 `parameters` text, `parameters` that text
        parsed as A1111 does (strings; `Size` also as `Size-1` and `Size-2`)."""
        if not body.image:
            raise InvalidRequest("`image` must hold a PNG in base64 (or a data: URL)")
        raw = conv.b64_bytes(body.image, "image")
        try:
            with Image.open(io.BytesIO(raw)) as image:
                limits = request.app.state.runtime.settings.engine.limits
                conv.check_image_size(image.size, "image", limits)
                image.load()  # text chunks after the pixels are read with them
                items = {k: v for k, v in getattr(image, "text", {}).items() if isinstance(v, str)}
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError) as exc:
            raise InvalidRequest(
                f"`image` is not a readable image ({unreadable_reason(exc)})"
            ) from exc
        info = items.pop("parameters", "")
        items.pop(pngmeta.JSON_KEY, None)  # the same parameters again, as paintbridge's JSON
        return {"info": info, "items": items, "parameters": conv.parse_infotext(info)}

    for path in ("/refresh-checkpoints", "/refresh-loras", "/refresh-vae", "/refresh-embeddings"):
        # nothing to refresh: /sd-models reads the models folders on every call
        router.add_api_route(path, _nothing, methods=["POST"])

    return router


def _empty_list() -> list[Any]:
    return []


def _nothing() -> None:
    return None


def _ram() -> dict[str, Any]:
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        total = os.sysconf("SC_PHYS_PAGES") * page
        free = os.sysconf("SC_AVPHYS_PAGES") * page
    except (AttributeError, ValueError, OSError):  # Windows, macOS without the names
        return {"error": "not known on this system"}
    return {"free": free, "used": total - free, "total": total}


def _cuda() -> dict[str, Any]:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return {"error": "no CUDA device in use (yet: a model loads on the first job)"}
    free, total = torch.cuda.mem_get_info()
    return {
        "system": {"free": free, "used": total - free, "total": total},
        "active": {
            "current": torch.cuda.memory_allocated(),
            "peak": torch.cuda.max_memory_allocated(),
        },
        "reserved": {
            "current": torch.cuda.memory_reserved(),
            "peak": torch.cuda.max_memory_reserved(),
        },
    }
