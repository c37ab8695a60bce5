"""Images for the LLM: local files inline and downscaled, URLs by reference, and the numbered grid a reranker sees."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from io import BytesIO

from llama_index.core.llms import ImageBlock
from llama_index.core.schema import BaseNode, ImageNode
from PIL import Image, ImageDraw, ImageFont, ImageOps


def image_block(image: str | bytes, max_side: int, detail: str | None = None) -> ImageBlock:
    """An http(s) URL by reference; a local file or image bytes as JPEG (PNG when transparent) within ``max_side``.

    ``detail``: OpenAI's ``high`` or ``low`` (None: the endpoint's default). Raises ``OSError`` when the image
    cannot be read.
    """
    return sized_image_block(image, max_side, detail)[0]


def sized_image_block(
    image: str | bytes, max_side: int, detail: str | None = None
) -> tuple[ImageBlock, tuple[int, int] | None]:
    """``image_block`` and the size (width, height) of the picture it sends; None for a URL (not fetched here)."""
    if isinstance(image, str) and image.startswith(("http://", "https://")):
        return ImageBlock(url=image, detail=detail), None
    picture = load_image(image, max_side)
    data, mime_type = _encode(picture)
    return ImageBlock(image=data, image_mimetype=mime_type, detail=detail), picture.size


def load_image(image: str | bytes, max_side: int) -> Image.Image:
    """The image (a path or bytes) upright (EXIF orientation applied), downscaled to fit ``max_side``."""
    with Image.open(BytesIO(image) if isinstance(image, bytes) else image) as opened:
        opened.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale when that suffices
        upright = ImageOps.exif_transpose(opened)
        upright.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        has_alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
        return upright.convert("RGBA" if has_alpha else "RGB")


def node_picture(node: BaseNode) -> str | bytes | None:
    """What an ``ImageNode`` shows: its local path, its URL, or its inline (base64) image decoded."""
    if not isinstance(node, ImageNode):
        return None
    if node.image_path or node.image_url:
        return node.image_path or node.image_url
    return base64.b64decode(node.image) if node.image else None


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
