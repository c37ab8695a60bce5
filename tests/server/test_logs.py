"""The server's log lines: a timestamp on each, JSON lines on request, and one level for ours and uvicorn's."""

from __future__ import annotations

import json
import logging
import re
import sys

from rag.server.logs import configure, formatter


def _record(name: str, level: int, message: str, exc_info=None) -> logging.LogRecord:
    return logging.getLogger(name).makeRecord(name, level, __file__, 1, message, (), exc_info)


def test_text_lines_have_a_timestamp_and_json_lines_are_objects() -> None:
    text = formatter("text").format(_record("uvicorn.access", logging.INFO, '"GET /health" 200'))
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO uvicorn.access: \"GET /health\" 200$", text)
    try:
        raise ValueError("boom")
    except ValueError:
        line = json.loads(formatter("json").format(_record("rag.server", logging.ERROR, "failed", sys.exc_info())))
    assert (line["level"], line["logger"], line["message"]) == ("ERROR", "rag.server", "failed")
    assert line["time"].endswith("+00:00") and "ValueError: boom" in line["exception"]


def test_the_level_applies_to_uvicorn_and_lines_go_through_the_root_handlers() -> None:
    root = logging.getLogger()
    saved = [(h, h.formatter, list(h.filters)) for h in root.handlers]
    access = logging.getLogger("uvicorn.access")
    access.addHandler(logging.NullHandler())  # as uvicorn's own configuration leaves it
    try:
        configure("WARNING", "json")
        assert not access.isEnabledFor(logging.INFO) and access.isEnabledFor(logging.WARNING)
        assert access.handlers == [] and access.propagate
        assert logging.getLogger("rag").level == logging.WARNING
        assert all(
            isinstance(h.formatter, logging.Formatter) and type(h.formatter).__name__ == "JsonFormatter"
            for h in root.handlers
        )
    finally:
        for handler, kept, filters in saved:
            handler.setFormatter(kept)
            handler.filters[:] = filters
        for name in ("rag", "connectors", "uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).setLevel(logging.NOTSET)
