"""Mitigations: low-spuriosity head tuning, DCWP, FFW and baselines, plus comparison and workspace runs.

Importing this package registers the job kinds ``mitigate`` and ``compare`` (`core.mitigate.runner`).
Method modules register themselves in `core.mitigate.common.METHODS` when imported
(`core.mitigate.common.get_method` imports them on first use).
"""
from core.mitigate.runner import METHOD_CHOICES, run_comparison, run_mitigation

__all__ = ["run_mitigation", "run_comparison", "METHOD_CHOICES"]
