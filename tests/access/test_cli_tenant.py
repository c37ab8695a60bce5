"""`rag ingest --tenant`: the items belong to that tenant, and a file another tenant has is refused untouched."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from connectors.milvus import EncoderInfo, MilvusStore
from connectors.sources import open_sources
from rag.access.tenants import tagged
from rag.ingest import ingest
from tests.ingest.test_cli_ingest import run
from tests.ingest.test_pipeline import make_folder


def tenants(tmp_path: Path) -> Counter[str]:
    with MilvusStore.open(tmp_path / "db" / "milvus.db", "kb", create=False) as store:
        return Counter(item.tenant for item, _, _ in store.iter_vectors())


@pytest.mark.slow  # five ingests in subprocess-like CLI runs
def test_ingest_tags_its_tenant_and_refuses_another_tenants_files(tmp_path: Path) -> None:
    acme, bravo = make_folder(tmp_path / "acme", 3), make_folder(tmp_path / "bravo", 2)
    assert run(tmp_path, "ingest", str(acme), "-c", "kb", "--tenant", "acme").exit_code == 0
    assert run(tmp_path, "ingest", str(bravo), "-c", "kb", "--tenant", "bravo").exit_code == 0
    assert tenants(tmp_path) == {"acme": 3, "bravo": 2}
    for others in (["--tenant", "bravo"], []):  # another tenant, or the default one, over acme's folder
        refused = run(tmp_path, "ingest", str(acme), "-c", "kb", *others)
        assert refused.exit_code == 2 and "3 stored item(s) of these sources belong to another tenant" in refused.output
    single = run(tmp_path, "ingest", str(acme / "img001.png"), "-c", "kb", "--tenant", "bravo")
    assert single.exit_code == 2 and "1 stored item(s)" in single.output
    assert tenants(tmp_path) == {"acme": 3, "bravo": 2}  # nothing moved or replaced
    again = run(tmp_path, "ingest", str(acme), "-c", "kb", "--tenant", "acme", "--json")
    assert again.exit_code == 0 and '"unchanged": 3' in again.output
    audit = [json.loads(line) for line in (tmp_path / "data" / "audit.jsonl").read_text().splitlines()]
    assert [(a["action"], a["tenant"]) for a in audit] == [("ingest", "acme"), ("ingest", "bravo"), ("ingest", "acme")]


def test_a_tenant_name_with_filter_syntax_is_refused(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "pictures", 1)
    for bad in ('x" or tenant != "x', "a'b", "../up", ""):
        result = run(tmp_path, "ingest", str(folder), "-c", "kb", "--tenant", bad)
        assert result.exit_code == 2 and "is not a valid name" in result.output, bad
    assert not (tmp_path / "db").exists() or run(tmp_path, "collections", "--json").output.strip() == "[]"


def test_a_prune_in_one_tenant_never_deletes_another_tenants_items(tiny_base, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    with MilvusStore.open(tmp_path / "db" / "milvus.db", "kb", encoder_info=EncoderInfo.of(tiny_base)) as store:
        for tenant, count in (("bravo", 2), ("acme", 1)):
            ingest(tagged(open_sources([make_folder(photos / tenant, count)]), tenant), tiny_base, store)
    for tenant in ("bravo", "acme"):  # every file gone: a prune of the folder would empty it
        shutil.rmtree(photos / tenant)
    acme_file = str(photos / "acme" / "img000.png")
    dry = run(tmp_path, "ingest", str(photos), "-c", "kb", "--prune", "--dry-run", "--tenant", "acme", "--json")
    assert dry.exit_code == 0, dry.output
    preview = json.loads(dry.stdout.strip().splitlines()[-1])
    assert (preview["deleted"], preview["items_deleted"]) == ([acme_file], 1)
    refused = run(tmp_path, "ingest", str(photos), "-c", "kb", "--prune", "--tenant", "acme")
    assert refused.exit_code == 3 and "all 1 stored item(s)" in refused.output  # the valve counts acme's only
    pruned = run(tmp_path, "ingest", str(photos), "-c", "kb", "--prune", "--yes", "--tenant", "acme", "--json")
    assert pruned.exit_code == 0 and json.loads(pruned.stdout.strip().splitlines()[-1])["removed"] == 1
    assert tenants(tmp_path) == {"bravo": 2}
