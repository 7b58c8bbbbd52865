"""Input images on the command line: 16-bit gray is scaled, not clipped to white."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from cli_support import RunCli
from PIL import Image

from paintbridge.cli.common import load_image, load_mask
from paintbridge.engine.types import Limits


def test_16_bit_gray_files_are_scaled(tmp_path: Path) -> None:
    """Pillow's own convert clips 16-bit gray at 255 (32768 would be white)."""
    path = tmp_path / "wide.png"
    Image.fromarray(np.array([[0, 300, 32768, 65535]], dtype=np.uint16)).save(path)
    image = load_image(path, Limits())
    assert image.mode == "RGBA"
    assert [image.getpixel((x, 0)) for x in range(4)] == [
        (0, 0, 0, 255), (1, 1, 1, 255), (128, 128, 128, 255), (255, 255, 255, 255)
    ]  # fmt: skip
    assert list(load_mask(path, Limits()).tobytes()) == [0, 1, 128, 255]


def test_img2img_of_a_16_bit_gray_png(cli: RunCli, tmp_path: Path) -> None:
    source, out = tmp_path / "in.png", tmp_path / "out.png"
    Image.fromarray(np.full((16, 16), 32768, dtype=np.uint16)).save(source)
    result = cli("img2img", source, "x", "--model", "test:identity", "--steps", "2",
                 "--seed", "1", "-o", out)  # fmt: skip
    assert result.code == 0, result.err
    with Image.open(out) as image:
        assert set(np.asarray(image.convert("RGB")).ravel().tolist()) == {128}
