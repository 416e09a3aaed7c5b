"""SpurAudit core engine: audit image classifiers for spurious correlations and remove them.

The small public API (everything else is reachable through the subpackages, see docs/DESIGN.md):

* a workspace and its data: `Workspace`, `build_dataset` (offline builders), `add_dataset_from` (your
  data on disk), `load_manifest`;
* models and features: `build_model`, `train_workspace_model`, `extract_features` (any model over any
  dataset, resumable), `load_features`;
* the audit: `discover_features`, `compute_spuriosity`, `spurious_gaps` (pure, on arrays), `run_audit`
  (the whole audit of a workspace model, with its HTML report), `load_rankings`;
* mitigation: `run_mitigation` (one method, recorded as a run), `compare` (several methods and seeds);
* `SpurAuditError`: every user error (bad input, missing files, absurd parameters), message names the fix.
"""
from core.audit.artifacts import load_rankings
from core.audit.discover import discover_features
from core.audit.gaps import spurious_gaps
from core.audit.spuriosity import compute_spuriosity
from core.data import add_dataset_from, build_dataset, load_manifest
from core.errors import SpurAuditError
from core.features import extract_features, load_features
from core.mitigate.compare import compare
from core.mitigate.runner import run_mitigation
from core.models import build_model, train_workspace_model
from core.report import run_audit
from core.workspace import Workspace

__all__ = ["Workspace", "build_dataset", "add_dataset_from", "load_manifest", "build_model", "train_workspace_model",
           "extract_features", "load_features", "discover_features", "compute_spuriosity", "spurious_gaps",
           "run_audit", "load_rankings", "run_mitigation", "compare", "SpurAuditError"]
