"""Embedding maps: vectors from a corpus or a collection, PCA/t-SNE projections, the PNG."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from connectors.sources import open_sources
from rag.analysis import embed_items, pca_2d, project, save_map, stored_vectors
from rag.analysis.embedding_map import EmbeddedSet, label_of, place_labels
from rag.items import ImageRef, KnowledgeItem
from tests.analysis.conftest import CORPUS


def corpus_items(tmp_path: Path) -> list[KnowledgeItem]:
    return [entry for entry in open_sources([CORPUS], cache_dir=tmp_path) if isinstance(entry, KnowledgeItem)]


def test_pca_finds_the_spread_and_is_reproducible() -> None:
    rng = np.random.default_rng(0)
    t = np.linspace(-1, 1, 20)
    points = np.outer(t, [3.0, 0, 0, 0]) + np.outer(rng.normal(size=20), [0, 0.1, 0, 0])
    coords = pca_2d(points)
    np.testing.assert_allclose(np.abs(coords[:, 0]), np.abs(3 * t), atol=0.01)  # the long axis comes first
    np.testing.assert_allclose(coords, pca_2d(points[::-1])[::-1], atol=1e-9)  # same signs whatever the order
    assert pca_2d(points[:2]).shape == (2, 2)


def test_projections_need_enough_points_and_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    vectors = np.random.default_rng(1).normal(size=(7, 8))
    assert project(vectors, "tsne").shape == (7, 2)
    with pytest.raises(ValueError, match="at least 3"):
        project(vectors[:2], "tsne")
    with pytest.raises(ValueError, match="pca, tsne, umap"):
        project(vectors, "mds")  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "umap", None)
    with pytest.raises(ImportError, match=r"mmrag\[umap\]"):
        project(vectors, "umap")


@pytest.mark.slow
def test_corpus_vectors_are_the_ingested_ones(tiny_base, tmp_path: Path, corpus_store) -> None:
    items = corpus_items(tmp_path)
    progress: list[tuple[int, int]] = []
    embedded = embed_items(tiny_base, items, color_by="kind", batch_size=3, on_progress=lambda *a: progress.append(a))
    assert progress == [(3, 7), (6, 7), (7, 7)]
    assert sorted(embedded.labels) == ["photo"] * 3 + ["synthetic"] * 4
    np.testing.assert_allclose(embedded.vectors, tiny_base.encode_image([item.image.uri for item in items]), atol=1e-5)
    stored = stored_vectors(corpus_store, field="image", color_by="kind")
    by_name = dict(zip(stored.names, stored.vectors))
    for name, vector in zip(embedded.names, embedded.vectors):
        np.testing.assert_allclose(by_name[name], vector, atol=1e-5)
    fused = embed_items(tiny_base, items, field="fused")
    stored_fused = dict(zip(*(lambda s: (s.names, s.vectors))(stored_vectors(corpus_store, field="fused"))))
    for name, vector in zip(fused.names, fused.vectors):
        np.testing.assert_allclose(stored_fused[name], vector, atol=1e-5)


def test_labels_come_from_the_item_or_its_metadata() -> None:
    item = KnowledgeItem.create(
        source="/data/shapes/red.png", text="red", tags=["shape", "red"], metadata={"kind": "synthetic"}
    )
    assert [label_of(item, key) for key in ("modality", "tag", "folder", "kind", "missing")] == [
        "text",
        "shape",
        "shapes",
        "synthetic",
        "(none)",
    ]


def test_the_map_is_a_png_with_a_point_per_item(tiny_base, tmp_path: Path) -> None:
    embedded = embed_items(tiny_base, corpus_items(tmp_path), color_by="kind")
    coords = project(embedded.vectors, "pca")
    plain = save_map(embedded, coords, tmp_path / "out" / "map.png", title="corpus")
    rich = save_map(embedded, coords, tmp_path / "thumbs.png", thumbnails=True, annotate=True)
    for path in (plain, rich):
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 500
    assert rich.stat().st_size > plain.stat().st_size  # the thumbnails are drawn


def test_maps_are_saved_in_the_format_their_name_asks_for(tmp_path: Path) -> None:
    embedded = EmbeddedSet(names=["a", "b", "c"], labels=["x", "y", "x"], images=[None] * 3, vectors=np.eye(3))
    coords = pca_2d(embedded.vectors)
    for name, image_format in (("map.jpg", "JPEG"), ("map.JPEG", "JPEG"), ("map.webp", "WEBP")):
        with Image.open(save_map(embedded, coords, tmp_path / name)) as image:
            assert image.format == image_format
    assert save_map(embedded, coords, tmp_path / "map.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(ValueError, match=r"cannot save a map as 'map.gif': name a \.png, \.jpg"):
        save_map(embedded, coords, tmp_path / "map.gif")
    assert not (tmp_path / "map.gif").exists()


def test_text_only_items_are_drawn_with_their_own_marker() -> None:
    from matplotlib.figure import Figure

    from rag.analysis.embedding_map import TEXT_LEGEND, draw_points

    images: list[str | None] = ["a.png", None, "b.png", None]
    embedded = EmbeddedSet(names=list("abcd"), labels=["x", "x", "y", "y"], images=images, vectors=np.eye(4))
    coords = pca_2d(embedded.vectors)
    axes = Figure().add_subplot()
    draw_points(axes, embedded, coords, ["x", "y"], ["red", "blue"])
    drawn = {collection.get_label(): collection for collection in axes.collections}
    for group, pictured, text in (("x", 0, 1), ("y", 2, 3)):
        np.testing.assert_allclose(drawn[group].get_offsets(), coords[[pictured]])
        np.testing.assert_allclose(drawn[f"_text-only:{group}"].get_offsets(), coords[[text]])
        square, dot = drawn[f"_text-only:{group}"].get_paths()[0], drawn[group].get_paths()[0]
        assert len(square.vertices) != len(dot.vertices)  # another marker, not another size
    assert len(drawn[TEXT_LEGEND].get_offsets()) == 0  # the legend's entry for the squares, drawn nowhere
    legend = [text.get_text() for text in axes.legend().get_texts()]
    assert legend == ["x", "y", TEXT_LEGEND]


def test_colour_groups_must_exist_and_items_are_named_without_paths(tiny_base, tmp_path: Path) -> None:
    items = corpus_items(tmp_path)
    with pytest.raises(ValueError, match="no item has a 'nosuchkey'.*modality, tag, folder or a metadata key: .*kind"):
        embed_items(tiny_base, items, color_by="nosuchkey")
    upload = items[0].image
    uploaded = KnowledgeItem.create(
        source=str(tmp_path / "uploads" / "0f3a9c.png"),
        image=ImageRef(uri=upload.uri),
        metadata={"upload_name": "holiday.jpg"},
    )
    embedded = embed_items(tiny_base, [*items, uploaded], color_by="modality")
    assert embedded.names[-1] == "holiday.jpg" and embedded.names[0] == "carriage-day.jpg"


def test_names_do_not_overlap_even_on_one_spot() -> None:
    from matplotlib.figure import Figure

    coords = np.array([[0.0, 0.0]] * 6 + [[0.02, 0.01], [1.0, 1.0], [-1.0, -1.0]])  # the six in the middle
    names = [f"shapes-{i}-a-long-file-name.png" for i in range(len(coords))]
    axes = Figure(figsize=(9, 7)).add_subplot()
    axes.scatter(coords[:, 0], coords[:, 1])
    boxes = place_labels(axes, coords, names)
    assert len(boxes) == len(names) and len(axes.texts) == len(names)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert min(a.x1, b.x1) <= max(a.x0, b.x0) or min(a.y1, b.y1) <= max(a.y0, b.y0), (a, b)


def test_names_stay_inside_the_axes_and_off_the_thumbnails() -> None:
    from matplotlib.figure import Figure
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    coords = np.array([[1.0, 0.5], [0.98, 0.52], [0.0, 0.0], [0.5, 1.0], [0.02, 0.98]])  # two at the right edge
    names = [f"a-rather-long-name-{i}.png" for i in range(len(coords))]
    axes = Figure(figsize=(6, 4), dpi=100).add_subplot()
    axes.scatter(coords[:, 0], coords[:, 1])
    icon = np.zeros((40, 40, 4), dtype=np.uint8)
    thumbs = [axes.add_artist(AnnotationBbox(OffsetImage(icon), point)) for point in coords]
    boxes = place_labels(axes, coords, names, gap=24, obstacles=thumbs)
    renderer = axes.figure.canvas.get_renderer()
    frame = axes.get_window_extent(renderer)
    for box in boxes:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, (box, frame)
        for thumb in thumbs:
            other = thumb.get_window_extent(renderer)
            assert min(box.x1, other.x1) <= max(box.x0, other.x0) or min(box.y1, other.y1) <= max(box.y0, other.y0)


def test_transparent_pictures_are_drawn_on_white(tmp_path: Path) -> None:
    icon = tmp_path / "icon.png"
    Image.new("RGBA", (40, 40), (0, 0, 0, 0)).save(icon)  # fully transparent, black underneath
    embedded = EmbeddedSet(names=["a", "b"], labels=["x", "x"], images=[str(icon)] * 2, vectors=np.eye(2))
    coords = np.array([[0.0, 0.0], [1.0, 1.0]])

    def black_pixels(thumbnails: bool) -> int:
        path = save_map(embedded, coords, tmp_path / f"map-{thumbnails}.png", thumbnails=thumbnails)
        with Image.open(path) as drawn:
            return int((np.asarray(drawn.convert("RGB")).astype(int).sum(axis=2) < 30).sum())

    added = black_pixels(True) - black_pixels(False)  # the axes' frame and text are black in both
    assert added < 200, added  # two black 40x40 squares would add over 3,000
