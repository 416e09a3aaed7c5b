"""The many-model study (issue 14; seed 002 §"spurious gaps of many models"): every model's predictions on
one ranked split, per-class and pooled spurious gaps with intervals, acc(high) vs acc(low) per model with
y = x and a fitted line (effective robustness), and the correlation of per-class gaps between models.

Modules: `specs` (which models: workspace models, ``<arch>@<checkpoint>``, ``timm:<name>@<checkpoint>``,
``clip-zeroshot:<name>[@<tag or file>]``), `analysis` (pure: predictions -> tables), `plots` (Plotly),
`run` (the resumable workspace run), `artifacts` (where a study's files live and how they are read).
"""
from core.study.analysis import StudyResult, analyse_study, effective_robustness, mean_pairwise
from core.study.artifacts import Study, list_studies, load_study
from core.study.run import StudyConfig, run_study
from core.study.specs import ModelSpec, parse_model_specs, read_models_file

__all__ = ["ModelSpec", "Study", "StudyConfig", "StudyResult", "analyse_study", "effective_robustness",
           "list_studies", "load_study", "mean_pairwise", "parse_model_specs", "read_models_file", "run_study"]
