"""Cost of a mitigation run: wall time, peak RSS (`core.mitigate.metrics.measure_cost`)."""
from core.mitigate.metrics import measure_cost


def test_cost_meter_measures():
    with measure_cost() as cost:
        sum(range(10000))
    assert cost.wall_time_s > 0 and cost.peak_rss_mb > 10
