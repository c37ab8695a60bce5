"""A query's request body: the query options model, read from a JSON body or from form fields (with an upload).

``QueryBody(SearchRequest)`` is a FastAPI dependency: ``application/json`` bodies are the model's fields as JSON;
forms (``multipart/form-data`` with an optional ``image`` file, or URL-encoded) carry the same fields, a list field
(``filter``) repeated. Both are checked by the model (``rag.retrieval.options``), with the server's cap on
``top_k``; its refusals reach the error handlers as a ``RequestValidationError``. ``openapi_body`` documents
both encodings in the OpenAPI schema.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, get_args, get_origin

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile

from rag.retrieval.options import QueryOptions

#: The most items one API query returns.
MAX_TOP_K = 100
#: The schemas of the request bodies, by name, for the OpenAPI schema's components (see ``openapi_body``).
BODY_SCHEMAS: dict[str, dict[str, Any]] = {}

R = TypeVar("R", bound=QueryOptions)


@dataclass(frozen=True)
class Query(Generic[R]):
    """A request's checked options (with its text) and its query image upload, if any."""

    options: R
    image: UploadFile | None


def query_body(model: type[R]) -> Callable[[Request], AsyncIterator[Query[R]]]:
    """The dependency reading ``model`` from the request, as JSON or as a form."""

    async def read(request: Request) -> AsyncIterator[Query[R]]:
        if _media_type(request) == "application/json":
            yield Query(_checked(model, await _json(request)), None)
            return
        form = await request.form(max_files=1)
        try:
            image = form.get("image")
            upload = image if isinstance(image, UploadFile) else None
            yield Query(_checked(model, _fields(model, form)), upload)
        finally:
            await form.close()

    return read


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """The route's ``openapi_extra``: ``model`` as a JSON body, or as form fields with an ``image`` file."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    BODY_SCHEMAS.update(schema.pop("$defs", {}))
    BODY_SCHEMAS[model.__name__] = schema
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    image = {"type": "string", "format": "binary", "description": "Query image (PNG, JPEG, WebP, GIF, BMP, TIFF)."}
    form = {"allOf": [ref, {"type": "object", "properties": {"image": image}}]}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": ref},
                "multipart/form-data": {"schema": form},
                "application/x-www-form-urlencoded": {"schema": ref},
            },
        }
    }


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _json(request: Request) -> object:
    try:
        return await request.json()
    except ValueError:
        error = {"type": "json_invalid", "loc": ("body",), "msg": "the body is not valid JSON", "input": None}
        raise RequestValidationError([error]) from None


def _fields(model: type[BaseModel], form: FormData) -> dict[str, object]:
    """The form's fields as the model reads them: a list field from its repeated values; empty values left out."""
    lists = {info.alias or name for name, info in model.model_fields.items() if _is_list(info.annotation)}
    data: dict[str, object] = {}
    for key in dict.fromkeys(form.keys()):
        if key == "image":
            continue
        values = [v for v in form.getlist(key) if not (isinstance(v, str) and v == "")]
        if values:
            data[key] = values if key in lists else values[-1]
    return data


def _is_list(annotation: object) -> bool:
    return get_origin(annotation) is list or any(get_origin(arm) is list for arm in get_args(annotation))


def _checked(model: type[R], data: object) -> R:
    """The model's options, within this server's cap on ``top_k``."""
    try:
        options = model.model_validate(data)
    except ValidationError as e:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in e.errors(include_url=False)]
        raise RequestValidationError(errors, body=data) from None
    if options.top_k is not None and options.top_k > MAX_TOP_K:
        message = f"Input should be less than or equal to {MAX_TOP_K}"
        error = {"type": "less_than_equal", "loc": ("body", "top_k"), "msg": message, "input": options.top_k}
        raise RequestValidationError([error], body=data)
    return options
