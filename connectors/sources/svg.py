"""SVG drawings: one image+text item, the drawing rendered by resvg (``resvg-py``, a self-contained wheel) as the
picture and the words it holds (``<title>``, ``<desc>``, ``<text>``) as the text.

The drawing is rendered with its longer side at its own size, between 512 and 2048 pixels, and the PNG kept in
the cache (``cache_dir/svg``) like a PDF page. A drawing that cannot be rendered keeps its words as a text item,
with a warning; one that is not XML is an error. Where local images may be read only from one folder
(``local_root``: uploads), images the drawing links to are dropped before it is rendered, so a drawing cannot
show another file's pixels; ``data:`` images stay.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from rag.items import Severity, SourceError
from rag.items import SourceErrorKind as Kind

from ._common import BadInput, LoadedImage, SourceResult, make_item, store_image
from .compressed import read_bytes
from .markup import squash
from .options import SourceOptions

SVG_SUFFIXES = (".svg",)
_SIDES = (512, 2048)  # the rendered picture's longer side: at least, at most
_UNITS = {"": 1.0, "px": 1.0, "pt": 4 / 3, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54, "in": 96.0}
_LENGTH = re.compile(r"^\s*([0-9.]+(?:[eE][-+]?\d+)?)\s*([a-z]*)\s*$")
_WORD_TAGS = ("title", "desc", "text")
#: Generic font families are drawn with the fonts Linux systems ship (resvg's defaults name Windows fonts, and
#: text set in them would not show).
_SANS = "DejaVu Sans"
_HREF = ("href", "{http://www.w3.org/1999/xlink}href")


def iter_svg(path: str | os.PathLike[str], options: SourceOptions | None = None) -> Iterator[SourceResult]:
    """Yield one item for an SVG file: its rendering and its words."""
    options = options or SourceOptions()
    doc = Path(path).resolve()
    where = str(doc)
    try:
        data = read_bytes(doc, options)
        root = ET.fromstring(data)
    except BadInput as e:
        yield e.report(where)
        return
    except ET.ParseError as e:
        yield SourceError(source=where, reason=f"not a readable SVG (XML: {e})", kind=Kind.UNREADABLE_DOCUMENT)
        return
    text = "\n".join(_words(root))
    metadata = {"file_path": where, "file_name": doc.name}
    image: LoadedImage | None = None
    problem: SourceError | None = None
    try:
        image = store_image(_render(root, doc.parent, options), "svg", options)
    except BadInput as e:
        problem = e.report(where)
        if text:
            reason = f"{e.reason}; its words are kept as a text item"
            problem = problem.model_copy(update={"reason": reason, "severity": Severity.WARNING})
    if image is None and not text:
        yield problem or SourceError(source=where, reason="nothing to read", kind=Kind.EMPTY_FILE)
        return
    yield from make_item(source=where, where=where, options=options, text=text, image=image, metadata=metadata)
    if problem:
        yield problem


def _words(root: ET.Element) -> Iterator[str]:
    """The drawing's words in document order: titles, descriptions, text elements (their tspans joined)."""
    seen: set[str] = set()
    for element in root.iter():
        if _local(element.tag) in _WORD_TAGS:
            words = squash("".join(element.itertext()))
            if words and words not in seen:
                seen.add(words)
                yield words


def _render(root: ET.Element, folder: Path, options: SourceOptions) -> bytes:
    import resvg_py

    if options.local_root is not None:
        _drop_linked_images(root)
    width, height = _size(root)
    longer = max(width, height)
    if longer:  # in pixels: resvg refuses other units (cm, mm, in) for the drawing's size
        root.set("width", f"{width:g}")
        root.set("height", f"{height:g}")
    scale = min(max(longer, _SIDES[0]), _SIDES[1]) / longer if longer else 1.0
    try:
        png = resvg_py.svg_to_bytes(
            svg_string=ET.tostring(root, encoding="unicode"),
            width=max(1, round(width * scale)) if longer else _SIDES[0],
            resources_dir=None if options.local_root is not None else str(folder),
            font_family=_SANS,
            sans_serif_family=_SANS,
            serif_family="DejaVu Serif",
            monospace_family="DejaVu Sans Mono",
        )
    except (ValueError, RuntimeError) as e:
        raise BadInput(Kind.CORRUPT_IMAGE, f"cannot render the drawing: {e}") from None
    return bytes(png)


def _size(root: ET.Element) -> tuple[float, float]:
    """The drawing's size in CSS pixels from ``width``/``height``, else its ``viewBox``; (0, 0) when unknown."""
    width, height = _length(root.get("width")), _length(root.get("height"))
    box = (root.get("viewBox") or "").replace(",", " ").split()
    if (not width or not height) and len(box) == 4:
        try:
            width, height = float(box[2]), float(box[3])
        except ValueError:
            return 0.0, 0.0
    return (width, height) if width > 0 and height > 0 else (0.0, 0.0)


def _length(value: str | None) -> float:
    match = _LENGTH.match(value or "")
    if not match or match[2] not in _UNITS:
        return 0.0
    return float(match[1]) * _UNITS[match[2]]


def _drop_linked_images(root: ET.Element) -> None:
    for parent in root.iter():
        for child in list(parent):
            href = next((child.get(h) or "" for h in _HREF if child.get(h)), "")
            if _local(child.tag) == "image" and not href.strip().lower().startswith("data:"):
                parent.remove(child)


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""
