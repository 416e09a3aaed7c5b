"""The audit engine: discover features, label them, rank images by spuriosity, measure spurious
gaps, find collisions, core crops and feature sensitivity (seed 002, METHODS.md §1).

Pure computation lives in one module per step (`discover`, `labels`, `spuriosity`, `gaps`,
`collisions`, `crops`, `sensitivity`, `plots`); `pipeline` runs the steps over a workspace and writes
their results (the write side), `artifacts` names those files and reads them back (the read side,
used by the report, the mitigation runner and the dashboard). `jobs` adapts job params to the
steps (job kinds ``audit``, ``audit-step``, ``report``). The whole audit with its HTML report is
`core.report.run_audit` (the report sits in the layer above).
"""
from __future__ import annotations

from core.audit.artifacts import current_verdicts, load_discovery, load_rankings
from core.audit.discover import DiscoveryConfig, DiscoveryResult, discover_features, feature_importance
from core.audit.gaps import GapConfig, GapResult, compare_models, spurious_gaps
from core.audit.labels import VerdictConfig, core_features, spurious_features, verdicts
from core.audit.pipeline import (run_audit, run_collisions, run_core_crops, run_discovery, run_gaps, run_mask_labels,
                                 run_rankings, run_sensitivity)
from core.audit.spuriosity import SpuriosityResult, compute_spuriosity

__all__ = ["DiscoveryConfig", "DiscoveryResult", "discover_features", "feature_importance", "GapConfig",
           "GapResult", "compare_models", "spurious_gaps", "VerdictConfig", "core_features", "spurious_features",
           "verdicts", "SpuriosityResult", "compute_spuriosity", "current_verdicts", "load_discovery",
           "load_rankings", "run_audit", "run_collisions", "run_core_crops", "run_discovery", "run_gaps",
           "run_mask_labels", "run_rankings", "run_sensitivity"]
