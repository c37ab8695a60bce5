"""What every encoder accepts and how it is batched: checked texts and (image, text) pairs, images decoded
from any input into :class:`PreparedImage`, and the batch loop that feeds the model.

Importing this module costs no torch; the functions that need it import it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from .prepared import ImageInput, ImageLoadError, PreparedImage, describe

if TYPE_CHECKING:
    import torch

    from rag.runtime import Runtime

    from .preprocess import Preprocessor


def load_image(image: str | Path | bytes | Image.Image) -> Image.Image:
    """Open and fully decode an image, EXIF orientation applied; the decompression-bomb guard stays on.

    Past ``Image.MAX_IMAGE_PIXELS`` PIL only warns; here that is a refusal. It is checked directly,
    not by turning warnings into errors, which would change every thread's warning filters.
    A PIL image passed in is never modified (a transposed copy is returned when it needs turning).
    """
    if isinstance(image, Image.Image):
        return ImageOps.exif_transpose(image)
    try:
        opened = Image.open(io.BytesIO(image) if isinstance(image, bytes) else image)
        try:
            limit = Image.MAX_IMAGE_PIXELS
            if limit and opened.width * opened.height > limit:
                raise ImageLoadError(
                    f"cannot read image {describe(image)}: {opened.width}x{opened.height} pixels exceeds the limit of "
                    f"{limit} (Image.MAX_IMAGE_PIXELS), a possible decompression bomb"
                )
            opened.load()  # the first frame, for animated images
            ImageOps.exif_transpose(opened, in_place=True)  # ours alone: no copy needed
        except BaseException:
            opened.close()
            raise
        return opened
    except ImageLoadError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageLoadError(f"cannot read image {describe(image)}: {e}") from e


def prepare_image(
    image: ImageInput, shape: tuple[int, ...], transform: Callable[[Image.Image], np.ndarray]
) -> PreparedImage:
    """One image as a :class:`PreparedImage` of ``shape``: prepared images and ``(3, H, W)`` float tensors
    pass through (checked), anything else is decoded and given to ``transform``."""
    if isinstance(image, PreparedImage):
        if image.shape != tuple(shape):
            raise ImageLoadError(f"a prepared image must have shape {tuple(shape)}, got {image.shape}")
        return image
    if not isinstance(image, (str, Path, bytes, Image.Image)):
        import torch

        if isinstance(image, torch.Tensor):
            if tuple(image.shape) != tuple(shape):
                raise ImageLoadError(f"a preprocessed image must have shape {tuple(shape)}, got {tuple(image.shape)}")
            return PreparedImage(image.detach().to("cpu", torch.float32).numpy())
        raise ImageLoadError(f"cannot read image {describe(image)}: pass a path, bytes, a PIL image or a tensor")
    try:
        decoded = load_image(image)
        with decoded:
            return PreparedImage(transform(decoded))
    except ImageLoadError:
        raise
    except (OSError, ValueError) as e:
        raise ImageLoadError(f"cannot read image {describe(image)}: {e}") from e


def normalisation_table(mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``table[c, v]`` = ``(v / 255 - mean[c]) / std[c]`` in float32: the usual normalisation of a ``uint8``
    value, computed once per possible value, so that looking pixels up gives the same bits on any device."""
    values = np.arange(256, dtype=np.float32)[None, :] / np.float32(255.0)
    return (values - np.asarray(mean, dtype=np.float32)[:, None]) / np.asarray(std, dtype=np.float32)[:, None]


def normalise_on_host(pixels: np.ndarray, table: np.ndarray) -> np.ndarray:
    """A ``(3, H, W)`` uint8 image through ``table`` (see :func:`normalisation_table`)."""
    return table[np.arange(table.shape[0])[:, None, None], pixels]


def stack_on_host(
    results: Iterable[PreparedImage | ImageLoadError], shape: tuple[int, ...], table: np.ndarray | None = None
) -> torch.Tensor:
    """Prepared images as the float32 ``(n, *shape)`` tensor the model reads, on the CPU (uint8 ones through
    ``table``); raises the first ``ImageLoadError`` among ``results``."""
    import torch

    arrays = []
    for result in results:
        if isinstance(result, ImageLoadError):
            raise result
        pixels = result.pixels
        arrays.append(normalise_on_host(pixels, table) if table is not None and pixels.dtype == np.uint8 else pixels)
    return torch.from_numpy(np.stack(arrays)) if arrays else torch.empty((0, *shape))


class PixelBatcher:
    """Stacks prepared images into the model's pixel batch on a device.

    On CUDA the batch is stacked in pinned host memory and copied without blocking; uint8 images
    are normalised on the device by table lookup (exactly the host arithmetic), so only a quarter
    of the bytes cross the bus.
    """

    def __init__(self, device: torch.device, dtype: torch.dtype, table: np.ndarray | None = None):
        import torch

        self.device, self.dtype = device, dtype
        self._pinned = device.type == "cuda"
        self._host_table = table
        self._table = None
        if table is not None:
            offsets = torch.arange(table.shape[0], dtype=torch.long).view(1, -1, 1, 1) * table.shape[1]
            self._table = torch.from_numpy(table).reshape(-1).to(device)
            self._offsets = offsets.to(device)

    def __call__(self, prepared: Sequence[PreparedImage]) -> torch.Tensor:
        import torch

        arrays = [p.pixels for p in prepared]
        if self._table is not None and all(a.dtype == np.uint8 for a in arrays):
            indices = self._to_device(arrays, torch.uint8).long() + self._offsets
            return self._table[indices].to(self.dtype)
        if self._host_table is not None:
            arrays = [normalise_on_host(a, self._host_table) if a.dtype == np.uint8 else a for a in arrays]
        return self._to_device(arrays, torch.float32).to(self.dtype)

    def _to_device(self, arrays: list[np.ndarray], dtype: torch.dtype) -> torch.Tensor:
        import torch

        host = torch.empty((len(arrays), *arrays[0].shape), dtype=dtype, pin_memory=self._pinned)
        np.stack(arrays, out=host.numpy())
        return host.to(self.device, non_blocking=self._pinned)


def run_batches(
    runtime: Runtime,
    n: int,
    width: int,
    embed: Callable[[list[int], torch.Tensor | None], torch.Tensor],
    *,
    texts: Sequence[str] | None = None,
    images: Sequence[ImageInput] | None = None,
    preprocessor: Preprocessor | None = None,
    batcher: PixelBatcher | None = None,
) -> np.ndarray:
    """Run ``embed(indices, pixels)`` over batches of the inputs and return its rows as float32 numpy, in input order.

    Texts of similar length share a batch (less padding). With ``images``, the preprocessor prepares
    the next batches on its workers while the model runs on this one; a bad image raises
    ``ImageLoadError`` naming it. Results stay on the device until the last batch is done.
    """
    import torch

    order = sorted(range(n), key=lambda i: len(texts[i])) if texts is not None else list(range(n))
    batches = [order[start : start + runtime.batch_size] for start in range(0, n, runtime.batch_size)]
    prepared = preprocessor.batches(images, batches) if images is not None and preprocessor else None
    outputs = []
    with torch.inference_mode():
        for batch in batches:
            pixels = batcher(next(prepared)) if prepared is not None and batcher is not None else None
            outputs.append(embed(batch, pixels))
        rows = torch.cat(outputs).float().cpu().numpy() if outputs else np.empty((0, width), np.float32)
    out = np.empty((n, width), dtype=np.float32)
    out[order] = rows
    return out


def as_texts(texts: Sequence[str]) -> list[str]:
    """The texts as a list; a bare string or a non-string element is a ``TypeError``."""
    if isinstance(texts, str):
        raise TypeError("pass a list of texts, not a single string")
    bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must be strings, got {', '.join(sorted(set(bad)))}")
    return list(texts)


def as_images(images: Sequence[ImageInput]) -> Sequence[ImageInput]:
    """The images, refused with a ``TypeError`` when one image (a path, a URL, bytes, a PIL image) was passed alone:
    like ``encode_text``, every ``encode_*`` takes a list, so ``encode_image("x.png")`` never reads letters."""
    if isinstance(images, (str, bytes, os.PathLike, Image.Image)):
        raise TypeError(f"pass a list of images, not a single {type(images).__name__}: encode_image([image])")
    return images


def check_pairs(images: Sequence[ImageInput], texts: Sequence[str]) -> list[str]:
    """The texts of (image, text) pairs, checked: one text per image."""
    as_images(images)
    texts = as_texts(texts)
    if len(images) != len(texts):
        raise ValueError(f"need one text per image, got {len(images)} images and {len(texts)} texts")
    return texts
