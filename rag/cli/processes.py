"""``rag ps`` and ``rag stop``: this user's background processes, as ``ollama ps`` and ``ollama stop`` show them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from rag.cli.common import JsonOpt, app, console
from rag.cli.warm import client


def _lite_servers() -> list[dict[str, Any]]:
    """The shared Milvus Lite servers of this user, with their data folder and live users."""
    from rag import background

    found = []
    for process, cmdline in background.running("connectors.milvus.supervisor"):
        data_dir = Path(background.option(cmdline, "--data-dir") or ".")
        folder = data_dir.parent / f".{data_dir.name}.server"
        try:
            rss = process.memory_info().rss
        except OSError:
            continue
        users = background.live_clients(folder) if folder.is_dir() else 0
        found.append({"pid": process.pid, "data": str(data_dir), "rss": rss, "users": users})
    return found


def _until(status: dict[str, Any] | None) -> str:
    if status is None:
        return "not answering"
    if status.get("busy"):
        return "running a command"
    return f"stops in {_duration(float(status['remaining']))} if unused"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


@app.command(name="ps")
def list_processes(as_json: JsonOpt = False) -> None:
    """List the background processes: warm model processes (RAG_KEEP_WARM) and shared Milvus Lite servers."""
    models, servers = client.running(), _lite_servers()
    if as_json:
        print(json.dumps({"models": models, "lite_servers": servers}))
        return
    if not models and not servers:
        console.print("no background process is running")
        return
    table = Table(box=None)
    for column in ("kind", "pid", "model or data", "memory", "until"):
        table.add_column(column, justify="right" if column in ("pid", "memory") else "left")
    for m in models:
        data = Path(m["folder"]).parent.parent
        status = m["status"]
        served = f", {status['served']} commands" if status else ""
        table.add_row(
            "model", str(m["pid"]), Text(f"{m['model']} ({data})"), _mb(m["rss"]), f"{_until(status)}{served}"
        )
    for s in servers:
        users = f"{s['users']} user{'s' if s['users'] != 1 else ''}"
        table.add_row("milvus lite", str(s["pid"]), Text(s["data"]), _mb(s["rss"]), f"{users}; stops once idle")
    Console().print(table)


def _mb(rss: int | None) -> str:
    return "?" if rss is None else f"{rss / 2**20:.0f} MB"


@app.command(name="stop")
def stop_processes(
    pids: Annotated[list[int] | None, typer.Argument(help="Stop only these warm model processes.")] = None,
) -> None:
    """Stop the warm model processes (each finishes the command it is running first). A shared Milvus Lite server
    stops by itself RAG_MILVUS_LITE_IDLE seconds after its last user."""
    models = [m for m in client.running() if not pids or m["pid"] in pids]
    if pids and not models:
        console.print(f"no warm model process with pid {', '.join(map(str, pids))}")
        raise typer.Exit(1)
    start = time.monotonic()
    stopped = client.stop(models)
    if not stopped:
        console.print("no warm model process is running")
        return
    console.print(
        f"stopped {len(stopped)} warm model process(es) in {time.monotonic() - start:.1f} s: "
        f"{', '.join(map(str, stopped))}"
    )
