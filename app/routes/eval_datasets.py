"""Evaluation datasets: upload a BEIR folder as its own collection, or attach labelled queries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from app.deps import ContainerDep, PrincipalDep
from app.routes.documents import read_limited
from app.services.eval_datasets import (
    AttachedDatasetCreate,
    EvalDatasetPublic,
    EvalDatasetsPublic,
    parse_upload,
)
from core.errors import InvalidInput

router = APIRouter(prefix="/v1/eval-datasets", tags=["evaluation"])
MAX_DATASET_FILES = 4  # app/upload_limit.py sizes the request body limit for this many


@router.post("", status_code=201, response_model=EvalDatasetPublic)
async def upload_dataset(
    principal: PrincipalDep,
    container: ContainerDep,
    files: Annotated[list[UploadFile], File(description="corpus.jsonl, queries.jsonl, qrels/<split>.tsv, "
                                                        "or one .zip / .tar.gz of the folder")],
    name: Annotated[str, Form(min_length=1, max_length=256)],
    split: Annotated[str, Form(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")] = "test",
    acl: Annotated[str | None, Form(description="extra readers, space separated (e.g. group:search)")] = None,
) -> EvalDatasetPublic:
    """The corpus is ingested as ordinary documents (source `eval:<id>`, readable by the uploader
    and `acl`); poll `GET /v1/eval-datasets/{id}` for their states. Runs wait for ingestion."""
    limit = container.settings.ingestion.max_upload_bytes
    if len(files) > MAX_DATASET_FILES:
        raise InvalidInput(f"{len(files)} files uploaded; a dataset has at most {MAX_DATASET_FILES} "
                           "(corpus, queries, qrels, or one archive)", field="files")
    data: dict[str, bytes] = {}
    for f in files:
        if not f.filename:
            raise InvalidInput("every uploaded file needs a file name", field="files")
        data[f.filename] = await read_limited(f, limit)
    ds = await run_in_threadpool(parse_upload, data, split, limit)
    return await run_in_threadpool(
        container.eval_datasets.create_collection, principal, name, ds, acl.split() if acl else None
    )


@router.post("/attached", status_code=201, response_model=EvalDatasetPublic)
def attach_dataset(body: AttachedDatasetCreate, principal: PrincipalDep, container: ContainerDep) -> EvalDatasetPublic:
    """Labelled queries over the tenant's existing documents (qrels name document ids)."""
    return container.eval_datasets.create_attached(principal, body)


@router.get("", response_model=EvalDatasetsPublic)
def list_datasets(principal: PrincipalDep, container: ContainerDep) -> EvalDatasetsPublic:
    return container.eval_datasets.list(principal)


@router.get("/{dataset_id}", response_model=EvalDatasetPublic)
def get_dataset(dataset_id: str, principal: PrincipalDep, container: ContainerDep) -> EvalDatasetPublic:
    return container.eval_datasets.get(principal, dataset_id)


@router.delete("/{dataset_id}", status_code=204)
def delete_dataset(dataset_id: str, principal: PrincipalDep, container: ContainerDep) -> Response:
    """Deletes the labels, every run over them, and a collection's documents."""
    container.eval_datasets.delete(principal, dataset_id)
    return Response(status_code=204)
