"""Job kinds of the data package (what the dashboard's New audit page starts):

- ``dataset-add``: `DatasetAddJob` -> `core.data.add_dataset_from` (a dataset on disk: imagefolder,
  csv, waterbirds, celeba, disent; ``options`` are the loader's, e.g. ``label_col``, ``mask_col``);
- ``dataset-build``: `DatasetBuildJob` -> `core.data.build_dataset` (an offline builder with its params);
- ``demo``: `DemoJob` -> `core.demo.run_demo` (the README's first command, as a job: the demo builds
  datasets first, so it sits with them).

Params become the dataclass through `core.config.config_from_mapping` (unknown keys listed), then one call.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.config import config_from_mapping
from core.data import SKIPPED_NAME, SOURCES, SYNTHETIC_KINDS, add_dataset_from, build_dataset, dataset_dir
from core.demo import run_demo
from core.errors import SpurAuditError, check_choice
from core.progress import ProgressFn
from core.workspace import Workspace, check_name


@dataclass(kw_only=True)
class DatasetAddJob:
    """Params of job kind "dataset-add": the new dataset's ``name``, the loader ``source``, the
    ``path`` (folder, or the CSV file), ``skip_bad`` (leave bad rows out and list them in the
    dataset's skipped rows), ``replace`` and the loader's ``options``."""

    name: str = ""
    source: str = ""
    path: str = ""
    skip_bad: bool = False
    replace: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"   # (filled by the job queue; unused)

    def validate(self) -> None:
        check_name("dataset", self.name)
        check_choice("dataset source", self.source, SOURCES)
        if not self.path.strip():
            raise SpurAuditError("dataset-add job needs params['path'] (the folder, or the CSV file)")


@dataclass(kw_only=True)
class DatasetBuildJob:
    """Params of job kind "dataset-build": ``name``, the builder ``kind``, ``seed``, ``replace`` and
    the builder's ``params`` (e.g. ``rho``, ``conflict``, ``n_train``)."""

    name: str = ""
    kind: str = ""
    seed: int = 0
    replace: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"

    def validate(self) -> None:
        check_name("dataset", self.name)
        check_choice("dataset builder", self.kind, SYNTHETIC_KINDS)


@dataclass(kw_only=True)
class DemoJob:
    """Params of job kind "demo": ``quick`` (seconds-scale sizes) and ``device``."""

    quick: bool = False
    device: str = "auto"


def _dataset_result(ws: Workspace, rec: Any) -> dict:
    out = {"dataset": rec.name, "source": rec.source, "classes": len(rec.class_names),
           "split_sizes": rec.params.get("split_sizes", {}), "skipped": rec.params.get("skipped", 0)}
    if out["skipped"]:
        out["skipped_rel"] = f"{dataset_dir(rec.name)}/{SKIPPED_NAME}"
    return out


def dataset_add_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Job kind "dataset-add": check every row and register the dataset (images stay where they are)."""
    job = config_from_mapping(DatasetAddJob, params, what="dataset-add job")
    rec = add_dataset_from(ws, job.name, job.source, job.path, skip_bad=job.skip_bad, replace=job.replace,
                           progress=progress, **job.options)
    return _dataset_result(ws, rec)


def dataset_build_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Job kind "dataset-build": build an offline dataset from bundled digits/textures and register it."""
    job = config_from_mapping(DatasetBuildJob, params, what="dataset-build job")
    rec = build_dataset(ws, job.kind, job.name, seed=job.seed, progress=progress, replace=job.replace, **job.params)
    return _dataset_result(ws, rec)


def demo_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Job kind "demo": both demo audits (reusing what already exists); returns the demo's summary."""
    job = config_from_mapping(DemoJob, params, what="demo job")
    return run_demo(ws, quick=job.quick, device=job.device, progress=progress)


JOB_KINDS = {"dataset-add": dataset_add_job, "dataset-build": dataset_build_job, "demo": demo_job}
