"""A 2-D map of a collection or a corpus: vectors, projected by PCA, t-SNE or UMAP, drawn as a coloured scatter.

PCA is plain numpy; t-SNE needs scikit-learn and drawing needs matplotlib (``pip install 'mmrag[analysis]'``);
UMAP needs umap-learn (``pip install 'mmrag[umap]'``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Callable, Iterable, Literal, Sequence

import numpy as np

from rag.embeddings.base import Encoder
from rag.embeddings.inputs import load_image
from rag.items import KnowledgeItem

if TYPE_CHECKING:
    from connectors.milvus import Filters, MilvusStore

logger = logging.getLogger(__name__)

Field = Literal["fused", "image"]
Method = Literal["pca", "tsne", "umap"]
METHODS: tuple[Method, ...] = ("pca", "tsne", "umap")
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
    of ``batch_size`` (default: the encoder's)."""
    batch_size = batch_size or encoder.runtime.batch_size
    kept = [item for item in items if field == "fused" or item.image is not None]
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
    matrix = np.stack(vectors) if vectors else np.zeros((0, store.encoder.dim), dtype=np.float32)
    return _embedded(items, matrix, color_by)


def _embedded(items: Sequence[KnowledgeItem], vectors: np.ndarray, color_by: str) -> EmbeddedSet:
    return EmbeddedSet(
        names=[Path(item.source).name or item.id for item in items],
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
    """Draw the scatter plot, coloured by label (with a legend), and save it as PNG.

    ``thumbnails`` draws each point's image (items without one stay dots); ``annotate`` writes names.
    """
    Figure = _optional("matplotlib.figure", "matplotlib", "analysis").Figure
    offsetbox = _optional("matplotlib.offsetbox", "matplotlib", "analysis")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(9, 7), dpi=110)
    axes = figure.add_subplot()
    groups = sorted(set(embedded.labels))
    palette = _palette(len(groups))
    for group, colour in zip(groups, palette):
        rows = [i for i, label in enumerate(embedded.labels) if label == group]
        axes.scatter(coords[rows, 0], coords[rows, 1], s=36, color=colour, label=group, alpha=0.85)
    if thumbnails:
        for i, image in enumerate(embedded.images):
            if image is None:
                continue
            try:
                picture = load_image(image).convert("RGB")
            except (OSError, ValueError) as e:
                logger.warning("no thumbnail for %s: %s", image, e)
                continue
            picture.thumbnail((thumbnail_px, thumbnail_px))
            colour = palette[groups.index(embedded.labels[i])]
            box = offsetbox.AnnotationBbox(
                offsetbox.OffsetImage(np.asarray(picture)), coords[i], frameon=True, bboxprops={"edgecolor": colour}
            )
            axes.add_artist(box)
    if annotate:
        offset = thumbnail_px * 0.6 if thumbnails else 4
        for i, name in enumerate(embedded.names):
            axes.annotate(name, coords[i], fontsize=7, xytext=(offset, offset), textcoords="offset points")
    axes.margins(0.12)
    axes.legend(loc="best", fontsize=8)
    axes.set_title(title)
    axes.set_xticks([])
    axes.set_yticks([])
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


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
        raise ImportError(f"{package} is needed for this: pip install 'mmrag[{extra}]' (or pip install {package})") from e
