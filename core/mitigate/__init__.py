"""Mitigations: low-spuriosity head tuning, DCWP, FFW and baselines, plus comparison and workspace runs.

Importing this package imports every method module, and each registers its run function in
`core.mitigate.registry.METHODS` (`register_method`). `METHOD_TABLE` lists the methods offered (name and
one-line description, in display order); `ffw_presets` / `ffw_variants` read the FFW variants from
``assets/presets/ffw.json``. The job kinds ``mitigate`` and ``compare`` are in `core.mitigate.jobs`.
"""
from core.mitigate import baselines, dcwp, ffw, head_tuning  # noqa: F401  (method modules register themselves)
from core.mitigate.presets import ffw_presets, ffw_variants
from core.mitigate.registry import METHOD_CHOICES, METHOD_TABLE, method_help
from core.mitigate.runner import run_comparison, run_mitigation

__all__ = ["run_mitigation", "run_comparison", "METHOD_TABLE", "METHOD_CHOICES", "method_help", "ffw_presets",
           "ffw_variants"]
