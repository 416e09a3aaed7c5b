"""Job kind of the study package: ``study`` (params -> `StudyConfig` -> `run_study`)."""
from __future__ import annotations

from core.config import config_from_mapping
from core.progress import ProgressFn
from core.study.run import StudyConfig, run_study
from core.workspace import Workspace


def study_job(ws: Workspace, params: dict, progress: ProgressFn) -> dict:
    """Run (or resume) a many-model study; returns its name and headline numbers."""
    cfg = config_from_mapping(StudyConfig, params, what="study job")
    out = run_study(ws, cfg, progress=progress)
    return {"name": out["name"], "n_models": out["n_models"], "mean_pairwise_pearson": out["mean_pairwise_pearson"],
            "fit": out["fit"]}


JOB_KINDS = {"study": study_job}
