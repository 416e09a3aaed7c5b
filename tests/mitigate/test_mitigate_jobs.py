"""Job kinds of the mitigate package (core/mitigate/jobs.py): params -> MitigateJob / CompareJob -> one call."""
import pytest

from core.errors import SpurAuditError
from core.mitigate import jobs as mitigate_jobs
from core.mitigate.jobs import CompareJob, MitigateJob


def test_job_kinds_are_registered():
    from core.jobs import load_job_kinds

    kinds = load_job_kinds()
    assert "mitigate" in kinds and "compare" in kinds


def test_params_become_the_job_dataclass_without_repeated_defaults():
    from core.config import config_from_mapping

    job = config_from_mapping(MitigateJob, {"dataset": "d", "model": "m", "method": "ffw", "seed": "3"})
    assert (job.config, job.seed, job.device) == (None, 3, "auto")
    job = config_from_mapping(CompareJob, {"dataset": "d", "model": "m", "methods": "erm,ffw", "seeds": []})
    assert job.methods == ["erm", "ffw"] and job.seeds == [0] and job.sweep is None
    assert config_from_mapping(CompareJob, {"dataset": "d", "model": "m", "methods": ["erm"]}).seeds == [0]


@pytest.mark.parametrize("kind, params, message", [
    ("mitigate", {"dataset": "d", "model": "m"}, r"mitigate job needs params \['method'\]"),
    ("mitigate", {"dataset": "d", "model": "", "method": "ffw"}, r"needs params \['model'\]"),
    ("compare", {"dataset": "d", "model": "m", "methods": []}, r"compare job needs params \['methods'\]"),
    ("mitigate", {"dataset": "d", "model": "m", "method": "ffw", "bogus": 1}, "unknown mitigate job option"),
    ("compare", {"dataset": "d", "model": "m", "methods": ["erm"], "seeds": "x"}, "compare job.seeds"),
])
def test_bad_job_params_are_refused_before_anything_runs(kind, params, message):
    with pytest.raises(SpurAuditError, match=message):
        mitigate_jobs.JOB_KINDS[kind](None, params, lambda f, m="": None)
