"""Image references as documents and manifests write them: URLs, data: and file: URIs, relative paths."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from urllib.parse import unquote, unquote_to_bytes, urlsplit

from rag.items import SourceErrorKind as Kind

from ._common import BadInput, LoadedImage, load_image_file, store_image
from .options import SourceOptions
from .urls import fetch_image


def load_image_ref(ref: str, base_dir: Path, options: SourceOptions, *, url_encoded: bool) -> LoadedImage:
    """Resolve an image reference: an http(s) URL, a ``data:`` or ``file:`` URI, or a path relative to ``base_dir``.

    ``url_encoded`` says the reference is a URL (Markdown, HTML), so a local path is percent-decoded
    and loses its query and fragment; manifest cells are taken as plain paths.
    """
    ref = ref.strip()
    parts = urlsplit(ref)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return fetch_image(ref, options)
    if scheme == "data":
        return _decode_data_uri(ref, options)
    if scheme == "file":
        path = Path(unquote(parts.path))
    elif len(scheme) > 1:  # one letter is a Windows drive
        raise BadInput(Kind.BAD_REFERENCE, f"unsupported URL scheme {scheme!r}")
    else:
        path = Path(unquote(parts.path) if url_encoded else ref)
    if not path.parts:
        raise BadInput(Kind.BAD_REFERENCE, "empty image reference")
    path = path if path.is_absolute() else base_dir / path
    if options.local_root is not None and not path.resolve().is_relative_to(options.local_root.resolve()):
        raise BadInput(
            Kind.BAD_REFERENCE,
            "local image outside the folder images may be read from (local_root, not named here: these sources come "
            "from other hands); reference images inside it, or embed them as data: URIs",
        )
    return load_image_file(path, options)


def _decode_data_uri(uri: str, options: SourceOptions) -> LoadedImage:
    header, comma, payload = uri[len("data:") :].partition(",")
    if not comma:
        raise BadInput(Kind.BAD_REFERENCE, "malformed data: URI (no comma)")
    try:
        data = (
            base64.b64decode("".join(unquote(payload).split()), validate=True)
            if header.endswith(";base64")
            else unquote_to_bytes(payload)
        )
    except binascii.Error as e:
        raise BadInput(Kind.BAD_REFERENCE, f"data: URI is not valid base64: {e}") from None
    return store_image(data, "inline", options)
