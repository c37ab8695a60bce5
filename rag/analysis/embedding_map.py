"""A 2-D map of a collection or a corpus: vectors, projected by PCA, t-SNE or UMAP, drawn as a coloured scatter.

PCA is plain numpy; t-SNE needs scikit-learn and drawing needs matplotlib (``pip install 'mmrag[analysis]'``);
UMAP needs umap-learn (``pip install 'mmrag[umap]'``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rag.embeddings.base import Encoder
from rag.embeddings.inputs import load_image
from rag.items import KnowledgeItem, item_name

if TYPE_CHECKING:
    from connectors.milvus import Filters, MilvusStore

logger = logging.getLogger(__name__)

Field = Literal["fused", "image"]
Method = Literal["pca", "tsne", "umap"]
METHODS: tuple[Method, ...] = ("pca", "tsne", "umap")
#: Colour groups every item has; ``color_by`` may also name any metadata key the items carry.
GROUPINGS = ("modality", "tag", "folder")
#: The files a map can be saved as, by suffix (matplotlib's formats).
FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".svg": "svg", ".pdf": "pdf"}
_EXACT_TSNE_BELOW = 500


@dataclass(frozen=True)
class EmbeddedSet:
    """Vectors to map, one row per item, with what to call and colour each point by."""

    names: list[str]
    labels: list[str]
    images: list[str | None]
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.names)


def map_format(path: str | Path) -> str:
    """The file format a map saved at ``path`` is written in, from its suffix; ValueError for other suffixes."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"cannot save a map as {Path(path).name!r}: name a {', '.join(FORMATS)} file")
    return FORMATS[suffix]


def check_color_by(items: Sequence[KnowledgeItem], color_by: str) -> None:
    """ValueError unless ``color_by`` is one of ``GROUPINGS`` or a metadata key of at least one item."""
    keys = sorted({key for item in items for key in item.metadata})
    if color_by not in GROUPINGS and color_by not in keys:
        raise ValueError(
            f"no item has a {color_by!r} to colour by; choose one of {', '.join(GROUPINGS)}"
            + (f" or a metadata key: {', '.join(keys)}" if keys else " (the items have no metadata keys)")
        )


def label_of(item: KnowledgeItem, color_by: str) -> str:
    """The item's colour group: its modality, first tag, parent folder, or ``metadata[color_by]``."""
    if color_by == "modality":
        return item.modality.value
    if color_by == "tag":
        return item.tags[0] if item.tags else "(no tag)"
    if color_by == "folder":
        return Path(item.source.split("#", 1)[0]).parent.name or "(none)"
    value = item.metadata.get(color_by)
    return "(none)" if value is None else str(value)


def embed_items(
    encoder: Encoder,
    items: Iterable[KnowledgeItem],
    *,
    field: Field = "image",
    color_by: str = "modality",
    batch_size: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> EmbeddedSet:
    """Embed items the way ingestion does: ``image`` vectors (items without an image are left out) or
    ``fused`` ones (text-only items get their text vector). ``on_progress(done, total)`` after each batch
    of ``batch_size`` (default: the encoder's). ``color_by`` is checked before anything is embedded."""
    batch_size = batch_size or encoder.runtime.batch_size
    kept = [item for item in items if field == "fused" or item.image is not None]
    check_color_by(kept, color_by)
    vectors = np.zeros((len(kept), encoder.dim), dtype=np.float32)
    for start in range(0, len(kept), batch_size):
        batch = kept[start : start + batch_size]
        with_image = [i for i, item in enumerate(batch) if item.image is not None]
        text_only = [i for i, item in enumerate(batch) if item.image is None]
        if with_image:
            images = [batch[i].image.uri for i in with_image]  # type: ignore[union-attr]
            if field == "image":
                vectors[[start + i for i in with_image]] = encoder.encode_image(images)
            else:
                fused, _ = encoder.encode_fused_and_image(images, [batch[i].text for i in with_image])
                vectors[[start + i for i in with_image]] = fused
        if text_only:
            vectors[[start + i for i in text_only]] = encoder.encode_text([batch[i].text for i in text_only])
        if on_progress is not None:
            on_progress(start + len(batch), len(kept))
    return _embedded(kept, vectors, color_by)


def stored_vectors(
    store: MilvusStore, *, field: Field = "image", color_by: str = "modality", filter: Filters | None = None
) -> EmbeddedSet:
    """The collection's stored vectors; with ``field="image"`` only items that have an image."""
    items, vectors = [], []
    for item, fused, image in store.iter_vectors(filter=filter):
        vector = fused if field == "fused" else image
        if vector is not None:
            items.append(item)
            vectors.append(vector)
    check_color_by(items, color_by)
    matrix = np.stack(vectors) if vectors else np.zeros((0, store.encoder.dim), dtype=np.float32)
    return _embedded(items, matrix, color_by)


def _embedded(items: Sequence[KnowledgeItem], vectors: np.ndarray, color_by: str) -> EmbeddedSet:
    return EmbeddedSet(
        names=[item.name or item_name(item.source, item.metadata) or item.id for item in items],
        labels=[label_of(item, color_by) for item in items],
        images=[item.image.uri if item.image else None for item in items],
        vectors=vectors,
    )


def project(vectors: np.ndarray, method: Method = "pca", *, seed: int = 0) -> np.ndarray:
    """``(n, 2)`` coordinates of the rows of ``vectors``."""
    n = len(vectors)
    minimum = 2 if method == "pca" else 3
    if n < minimum:
        raise ValueError(f"{method} needs at least {minimum} points, got {n}")
    if method == "pca":
        return pca_2d(vectors)
    if method == "tsne":
        TSNE = _optional("sklearn.manifold", "scikit-learn", "analysis").TSNE
        # Perplexity must stay below the number of points; 30 is the usual value for larger sets.
        # Exact gradients are faster than Barnes-Hut below a few hundred points, and exact.
        perplexity = min(30.0, max(1.0, (n - 1) / 3.0))
        method_ = "exact" if n < _EXACT_TSNE_BELOW else "barnes_hut"
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, method=method_)
        return tsne.fit_transform(vectors)
    if method == "umap":
        UMAP = _optional("umap", "umap-learn", "umap").UMAP
        return UMAP(n_components=2, n_neighbors=min(15, n - 1), random_state=seed).fit_transform(vectors)
    raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """The first two principal components by SVD of the centred rows, signs fixed for reproducible plots."""
    centred = np.asarray(vectors, dtype=np.float64) - np.mean(vectors, axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    coords = np.zeros((len(vectors), 2))
    k = min(2, len(s))
    signs = np.sign(vt[np.arange(k), np.abs(vt[:k]).argmax(axis=1)])
    coords[:, :k] = u[:, :k] * s[:k] * signs
    return coords


def save_map(
    embedded: EmbeddedSet,
    coords: np.ndarray,
    path: str | Path,
    *,
    title: str = "",
    thumbnails: bool = False,
    thumbnail_px: int = 40,
    annotate: bool = False,
) -> Path:
    """Draw the scatter plot, coloured by label (with a legend), and save it in the format its suffix names
    (PNG, JPEG, WebP, SVG or PDF; see ``FORMATS``).

    ``thumbnails`` draws each point's image (items without one stay dots); ``annotate`` writes names,
    each placed beside its point where it overlaps no other name.
    """
    image_format = map_format(path)
    Figure = _optional("matplotlib.figure", "matplotlib", "analysis").Figure
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(9, 7), dpi=110)
    axes = figure.add_subplot()
    groups = sorted(set(embedded.labels))
    palette = _palette(len(groups))
    draw_points(axes, embedded, coords, groups, palette)
    pictures = _thumbnails(axes, embedded, coords, dict(zip(groups, palette)), thumbnail_px) if thumbnails else []
    axes.margins(0.12)
    axes.legend(loc="best", fontsize=8)
    axes.set_title(title)
    axes.set_xticks([])
    axes.set_yticks([])
    figure.tight_layout()
    if annotate:
        obstacles = [*pictures, axes.get_legend()]
        place_labels(axes, coords, embedded.names, gap=thumbnail_px * 0.7 if thumbnails else 4, obstacles=obstacles)
    figure.savefig(path, format=image_format)
    return path


def _thumbnails(axes: Any, embedded: EmbeddedSet, coords: np.ndarray, colours: dict[str, Any], px: int) -> list[Any]:
    """Draw each item's picture at its point, framed in its group's colour; returns the drawn boxes."""
    offsetbox = _optional("matplotlib.offsetbox", "matplotlib", "analysis")
    drawn = []
    for i, image in enumerate(embedded.images):
        if image is None:
            continue
        try:
            picture = load_image(image).convert("RGBA")  # transparent parts show the frame's white, not black
        except (OSError, ValueError) as e:
            logger.warning("no thumbnail for %s: %s", image, e)
            continue
        picture.thumbnail((px, px))
        box = offsetbox.AnnotationBbox(
            offsetbox.OffsetImage(np.asarray(picture)),
            coords[i],
            frameon=True,
            bboxprops={"edgecolor": colours[embedded.labels[i]]},
        )
        drawn.append(axes.add_artist(box))
    return drawn


#: How a text-only item is drawn (an item with a picture is a dot): a square, named once in the legend.
TEXT_MARKER = "s"
TEXT_LEGEND = "text-only item (square)"


def draw_points(
    axes: Any, embedded: EmbeddedSet, coords: np.ndarray, groups: Sequence[str], palette: Sequence[Any]
) -> None:
    """One scatter per colour group: items with a picture as dots, text-only items as squares of the same colour
    (labelled ``_text-only:<group>``, out of the legend, which names the square once)."""
    for group, colour in zip(groups, palette):
        rows = [i for i, label in enumerate(embedded.labels) if label == group]
        pictured = [i for i in rows if embedded.images[i] is not None]
        texts = [i for i in rows if embedded.images[i] is None]
        axes.scatter(coords[pictured, 0], coords[pictured, 1], s=36, color=colour, label=group, alpha=0.85)
        if texts:
            axes.scatter(
                coords[texts, 0],
                coords[texts, 1],
                s=40,
                color=colour,
                marker=TEXT_MARKER,
                edgecolors="black",
                linewidths=0.6,
                alpha=0.85,
                label=f"_text-only:{group}",
            )
    if any(image is None for image in embedded.images):
        axes.scatter([], [], s=40, marker=TEXT_MARKER, color="white", edgecolors="black", label=TEXT_LEGEND)


def place_labels(
    axes: Any,
    coords: np.ndarray,
    names: Sequence[str],
    *,
    gap: float = 4,
    fontsize: float = 7,
    obstacles: Sequence[Any] = (),
) -> list[Any]:
    """Write each name beside its point, at the first spot around it (right, left, above, below, the diagonals,
    then the same further out) that stays inside the axes and overlaps no name placed before and none of the
    ``obstacles`` (artists such as thumbnails or the legend), else at the spot that does so least (a name cut
    off by the figure's edge costing most, then overlaps, then crossing the axes' frame); returns the names'
    boxes in display pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(axes.figure).get_renderer()
    axes.figure.draw_without_rendering()  # data limits and layout final, so boxes land where they will be drawn
    frame, page = axes.get_window_extent(renderer), axes.figure.bbox
    blocked = [artist.get_window_extent(renderer) for artist in obstacles if artist is not None]
    placed: list[Any] = []
    for point, name in zip(coords, names):
        best: tuple[tuple[float, float, float], Any, Any] | None = None
        for offset, align in _label_spots(gap, fontsize):
            label = axes.annotate(name, point, xytext=offset, textcoords="offset points", fontsize=fontsize, ha=align)
            box = label.get_window_extent(renderer)
            area = box.width * box.height
            cost = (
                area - _overlap(box, page),
                sum(_overlap(box, other) for other in (*placed, *blocked)),
                area - _overlap(box, frame),
            )
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, label, box)
            else:
                label.remove()
            if not any(cost):
                break
        assert best is not None
        placed.append(best[2])
    return placed


def _label_spots(gap: float, size: float) -> Iterator[tuple[tuple[float, float], str]]:
    """Offsets in points from a point, and the text alignment, nearest first."""
    for ring in (1, 2, 3):
        g = gap * ring + size * (ring - 1)
        below = -g - size
        yield from (
            ((g, -size / 2), "left"),
            ((-g, -size / 2), "right"),
            ((0, g), "center"),
            ((0, below), "center"),
            ((g, g), "left"),
            ((-g, g), "right"),
            ((g, below), "left"),
            ((-g, below), "right"),
        )


def _overlap(a: Any, b: Any) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(width, 0.0) * max(height, 0.0)


def _palette(n: int) -> list[tuple[float, float, float, float]]:
    colormaps = _optional("matplotlib", "matplotlib", "analysis").colormaps
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _optional(module: str, package: str, extra: str) -> ModuleType:
    """Import an optional dependency, or say which extra brings it."""
    from importlib import import_module

    try:
        return import_module(module)
    except ImportError as e:
        advice = f"pip install 'mmrag[{extra}]' (or pip install {package})"
        raise ImportError(f"{package} is needed for this: {advice}") from e
