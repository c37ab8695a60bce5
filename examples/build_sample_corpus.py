"""Draw the synthetic half of the sample corpus (examples/corpus/shapes-*.png with captions).

The photos beside them come from FlagEmbedding's research/visual_bge/imgs (MIT License).
Run once; the outputs are committed.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).parent / "corpus"

SHAPES = [
    ("red-circle", "A red circle on a white background.", "red", "ellipse", ["shape", "red"]),
    ("blue-square", "A blue square on a white background.", "blue", "rectangle", ["shape", "blue"]),
    ("green-triangle", "A green triangle on a white background.", "green", "triangle", ["shape", "green"]),
    ("red-square", "A red square on a white background.", "red", "rectangle", ["shape", "red"]),
]


def draw(colour: str, shape: str) -> Image.Image:
    image = Image.new("RGB", (256, 256), "white")
    pen = ImageDraw.Draw(image)
    box = (48, 48, 208, 208)
    if shape == "ellipse":
        pen.ellipse(box, fill=colour)
    elif shape == "rectangle":
        pen.rectangle(box, fill=colour)
    else:
        pen.polygon([(128, 40), (216, 208), (40, 208)], fill=colour)
    return image


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, caption, colour, shape, tags in SHAPES:
        draw(colour, shape).save(OUT / f"shapes-{name}.png")
        (OUT / f"shapes-{name}.json").write_text(json.dumps({"text": caption, "tags": tags, "kind": "synthetic"}))


if __name__ == "__main__":
    main()
