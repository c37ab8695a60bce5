"""A corpus whose answers are known, ingested with the tiny parity encoder into Milvus Lite.

Nine items pair three pictures with three captions, so that items differ only in the image or
only in the text; one item has a caption no other text shares; two items are the same picture
and caption from two sources; one picture has no caption; three items are text only.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from connectors.milvus import EncoderInfo, MilvusStore
from rag.embeddings import VisualizedBGE
from rag.ingest import ingest
from rag.items import ImageRef, KnowledgeItem

COLLECTION = "known"
CAPTIONS = ["a red dress on a hanger", "a blue whale in the ocean", "the mid-hudson bridge at night"]
LIGHTHOUSE = "a lighthouse on a rocky cliff at dawn"
COPIES = "two copies of one picture"
NOTES = [
    "The keeper polished the lighthouse lamp every evening.",
    "Milvus Lite keeps a whole collection in one local file.",
    "Quarterly revenue grew by eight percent.",
]


def draw(path: Path, seed: int) -> Path:
    """A random 32x32 colour pattern, enlarged to 224x224 (distinct per seed)."""
    pixels = (np.random.default_rng(seed).random((32, 32, 3)) * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).resize((224, 224), Image.NEAREST).save(path)
    return path


def image_item(source: str, text: str, path: Path, **fields) -> KnowledgeItem:
    return KnowledgeItem.create(
        source=source,
        text=text,
        image=ImageRef(uri=str(path), mime_type="image/png"),
        image_bytes=path.read_bytes(),
        **fields,
    )


@dataclass
class Corpus:
    root: Path
    db: str
    pictures: list[Path]  # 0-2: the grid, 3: lighthouse, 4: the copied picture, 5: uncaptioned
    items: dict[str, KnowledgeItem]  # by source

    def id(self, source: str) -> str:
        return self.items[source].id

    def open(self, collection: str = COLLECTION, **kwargs) -> MilvusStore:
        return MilvusStore.open(self.db, collection, create=False, **kwargs)


def build_items(root: Path) -> tuple[list[Path], list[KnowledgeItem]]:
    pictures = [draw(root / "pictures" / f"p{i}.png", seed=i) for i in range(6)]
    (root / "copies").mkdir(parents=True, exist_ok=True)
    copies = [Path(shutil.copy(pictures[4], root / "copies" / name)) for name in ("a.png", "b.png")]
    items = [image_item(f"grid/{i}-{j}", CAPTIONS[j], pictures[i], tags=["grid"]) for i in range(3) for j in range(3)]
    items += [
        image_item("lighthouse", LIGHTHOUSE, pictures[3], tags=["coast"]),
        image_item("copies/a", COPIES, copies[0]),
        image_item("copies/b", COPIES, copies[1]),
        image_item("uncaptioned", "", pictures[5]),
    ]
    items += [KnowledgeItem.create(source=f"notes/{k}", text=text, tags=["note"]) for k, text in enumerate(NOTES)]
    return pictures, items


def ingest_items(db: str, collection: str, encoder: VisualizedBGE, items: list[KnowledgeItem], **open_kwargs) -> None:
    with MilvusStore.open(db, collection, encoder_info=EncoderInfo.of(encoder), **open_kwargs) as store:
        report = ingest(items, encoder, store, batch_size=8)
    assert report.added == len(items) and not report.problems, report.summary()


def build(root: Path, encoder: VisualizedBGE, db: str | None = None) -> Corpus:
    """The corpus under ``root``, ingested into ``db`` (default: a Milvus Lite folder under ``root``)."""
    pictures, items = build_items(root)
    db = db or str(root / "milvus.db")
    ingest_items(db, COLLECTION, encoder, items)
    return Corpus(root=root, db=db, pictures=pictures, items={item.source: item for item in items})
