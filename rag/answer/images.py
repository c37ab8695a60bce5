"""Images for the LLM: local files inline and downscaled, URLs by reference, and the numbered grid a reranker sees."""

from __future__ import annotations

import math
from io import BytesIO
from typing import Sequence

from llama_index.core.llms import ImageBlock
from PIL import Image, ImageDraw, ImageFont, ImageOps


def image_block(uri: str, max_side: int) -> ImageBlock:
    """An http(s) image by URL; a local file as JPEG (PNG when it has transparency) no larger than ``max_side``.

    Raises ``OSError`` when the file is missing or unreadable.
    """
    if uri.startswith(("http://", "https://")):
        return ImageBlock(url=uri)
    data, mime_type = _encode(load_image(uri, max_side))
    return ImageBlock(image=data, image_mimetype=mime_type)


def load_image(path: str, max_side: int) -> Image.Image:
    """The image upright (EXIF orientation applied), downscaled to fit ``max_side``."""
    with Image.open(path) as image:
        image.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale when that suffices
        image = ImageOps.exif_transpose(image)
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        return image.convert("RGBA" if has_alpha else "RGB")


def grid(tiles: Sequence[Image.Image | str], cell: int = 256) -> ImageBlock:
    """One picture of the tiles in a grid, each numbered from 1 in its corner; a string tile is drawn as text."""
    columns = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    canvas = Image.new("RGB", (columns * cell, rows * cell), "white")
    draw = ImageDraw.Draw(canvas)
    label_font = ImageFont.load_default(size=max(12, cell // 7))
    text_font = ImageFont.load_default(size=max(10, cell // 16))
    for index, tile in enumerate(tiles):
        x, y = (index % columns) * cell, (index // columns) * cell
        if isinstance(tile, Image.Image):
            picture = ImageOps.contain(tile.convert("RGB"), (cell - 8, cell - 8))
            canvas.paste(picture, (x + (cell - picture.width) // 2, y + (cell - picture.height) // 2))
        else:
            draw.multiline_text((x + 10, y + cell // 4), _wrap(tile, cell // 9), fill="black", font=text_font)
        draw.rectangle((x, y, x + cell - 1, y + cell - 1), outline="gray")
        label = str(index + 1)
        box = draw.textbbox((x + 6, y + 4), label, font=label_font)
        draw.rectangle((box[0] - 4, box[1] - 4, box[2] + 4, box[3] + 4), fill="red")
        draw.text((x + 6, y + 4), label, fill="white", font=label_font)
    data, mime_type = _encode(canvas)
    return ImageBlock(image=data, image_mimetype=mime_type)


def _wrap(text: str, width: int, lines: int = 8) -> str:
    words, out, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    out.append(line)
    return "\n".join(out[:lines]) + ("…" if len(out) > lines else "")


def _encode(image: Image.Image) -> tuple[bytes, str]:
    buffer = BytesIO()
    if image.mode == "RGBA":
        image.save(buffer, format="PNG", optimize=True)
        return buffer.getvalue(), "image/png"
    image.save(buffer, format="JPEG", quality=88)
    return buffer.getvalue(), "image/jpeg"
