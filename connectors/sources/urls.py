"""Image URLs: fetched only when ``allow_urls`` is on, http(s) only, with a size cap and a deadline."""

from __future__ import annotations

import hashlib
import http.client
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

from rag.items import SourceErrorKind as Kind

from ._common import BadInput, LoadedImage, SourceResult, make_item, store_image
from .options import SourceOptions

logger = logging.getLogger(__name__)

_CHUNK = 64 * 1024


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    max_redirections = 5

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise urllib.error.URLError(f"redirect to a non-http(s) URL refused: {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_opener = urllib.request.build_opener(_HttpOnlyRedirects)


def fetch_image(url: str, options: SourceOptions) -> LoadedImage:
    """Download one image into ``cache_dir/downloads`` and check it; raises BadInput on any failure."""
    if not options.allow_urls:
        raise BadInput(Kind.URL_DISABLED, "URL fetching is off: allow URLs (RAG_ALLOW_URLS=true) to fetch this")
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise BadInput(Kind.BAD_REFERENCE, "only http(s) URLs are fetched")
    cap, timeout = options.max_download_bytes, options.url_timeout
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"User-Agent": "mmrag", "Accept": "image/*"})
    chunks: list[bytes] = []
    try:
        with _opener.open(request, timeout=timeout) as response:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > cap:
                raise BadInput(Kind.IMAGE_TOO_LARGE, f"Content-Length {declared} exceeds the {cap}-byte cap")
            received = 0
            while chunk := response.read1(_CHUNK):
                received += len(chunk)
                if received > cap:
                    raise BadInput(Kind.IMAGE_TOO_LARGE, f"more than {cap} bytes; download stopped")
                if time.monotonic() > deadline:
                    raise BadInput(Kind.FETCH_FAILED, f"download took longer than {timeout:g} s")
                chunks.append(chunk)
    except BadInput:
        raise
    except urllib.error.HTTPError as e:
        raise BadInput(Kind.FETCH_FAILED, f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise BadInput(Kind.FETCH_FAILED, f"cannot fetch: {e.reason}") from None
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise BadInput(Kind.FETCH_FAILED, f"cannot fetch: {e}") from None
    logger.debug("fetched %s (%d bytes)", url, received)
    image = store_image(b"".join(chunks), "downloads", options)
    return image._replace(metadata={"url": url})


def iter_urls(urls: Iterable[str], options: SourceOptions | None = None) -> Iterator[SourceResult]:
    """One image-only item per URL; the item's image points at the downloaded copy, the URL is kept in metadata."""
    options = options or SourceOptions()
    for url in urls:
        try:
            image = fetch_image(url, options)
        except BadInput as e:
            yield e.report(url)
            continue
        yield from make_item(
            source=url, where=url, options=options, image=image, content_hash=hashlib.sha256(image.data).hexdigest()
        )
