"""``/api/ingest``: uploads ingested in the background, and the jobs that do it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile, status
from starlette.exceptions import HTTPException

from connectors.sources.ocr import OcrMode
from rag.access import Principal, check_tenant

from ..auth import AuditDep, PrincipalDep, audited_ingest
from ..jobs import IngestJob
from ..models import ErrorBody
from ..service import DOCUMENT_SUFFIXES, UploadError
from .deps import ServiceDep, SettingsDep, read_upload

router = APIRouter(tags=["ingest"])


@router.post("/ingest", status_code=status.HTTP_202_ACCEPTED)
def ingest(
    service: ServiceDep,
    settings: SettingsDep,
    who: PrincipalDep,
    audit: AuditDep,
    response: Response,
    files: Annotated[
        list[UploadFile],
        File(
            description="Images to add, documents (.pdf, .md, .html, .txt, .docx, .pptx) and manifests (.jsonl, "
            ".ndjson, .csv) whose rows name images or URLs. Items are named by the uploaded file's name."
        ),
    ],
    captions: Annotated[
        list[str] | None, Form(description="One caption per file, in the same order (ignored for manifests).")
    ] = None,
    tags: Annotated[str, Form(description="Comma-separated tags for every uploaded image.")] = "",
    tenant: Annotated[
        str | None,
        Form(
            description="The tenant the items belong to: a token of one tenant writes to its own; an admin's may "
            "name any (none: the default tenant)."
        ),
    ] = None,
    ocr: Annotated[
        OcrMode | None,
        Form(
            description="When to read text from pixels (the OCR extra): auto, PDF pages without a text layer; all, "
            "pictures too; off, never. Default: the server's RAG_OCR."
        ),
    ] = None,
) -> IngestJob:
    """Keep the files and ingest them in the background; poll the job's URL for progress."""
    target = _tenant_written(who, tenant)
    if captions and len(captions) != len(files):
        raise UploadError(f"{len(captions)} captions for {len(files)} files: give one per file, or none")
    max_bytes = settings.server_max_upload_bytes
    images: list[tuple[str, bytes, str]] = []
    manifests: list[tuple[str, bytes]] = []
    for index, upload in enumerate(files):
        name = Path(upload.filename or f"file-{index}").name
        if Path(name).suffix.lower() in DOCUMENT_SUFFIXES:
            manifests.append((name, read_upload(upload, max_bytes)))
        else:
            images.append((name, read_upload(upload, max_bytes), captions[index] if captions else ""))
    received = [name for name, *_ in images] + [name for name, _ in manifests]
    job = service.submit_ingest(
        images,
        manifests,
        [t.strip() for t in tags.split(",") if t.strip()],
        on_done=audited_ingest(audit, who, received),
        tenant=target,
        ocr=ocr,
    )
    response.headers["Location"] = f"/api/ingest/{job.id}"
    return job


@router.get("/ingest")
def ingest_jobs(service: ServiceDep, who: PrincipalDep) -> list[IngestJob]:
    """The recent ingest jobs, newest first (a tenant's token: that tenant's)."""
    return [job for job in service.jobs.all() if who.tenant is None or job.tenant == who.tenant]


@router.get("/ingest/{job_id}", responses={404: {"model": ErrorBody}})
def ingest_job(service: ServiceDep, who: PrincipalDep, job_id: str) -> IngestJob:
    """One ingest job: status, items added so far, problems."""
    job = service.jobs.get(job_id)
    if job is None or (who.tenant is not None and job.tenant != who.tenant):
        message = f"no ingest job {job_id!r} (the last 100 jobs are kept, across restarts)"
        raise HTTPException(status.HTTP_404_NOT_FOUND, message)
    return job


def _tenant_written(who: Principal, asked: str | None) -> str | None:
    """The tenant an upload writes to: the token's own; an admin's choice (checked) or None (the default)."""
    asked = asked.strip() if asked and asked.strip() else None
    if who.tenant is not None:
        if asked is not None and asked != who.tenant:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this token writes to tenant {who.tenant!r} only")
        return who.tenant
    return check_tenant(asked) if asked is not None else None
