"""The demo's settings come from assets/presets/demo.json (core/demo.py: demo_settings, DemoConfig)."""
from core.demo import DemoConfig, demo_settings
from core.mitigate.registry import check_config


def test_quick_and_full_demo_settings():
    quick, full = DemoConfig(quick=True), DemoConfig(quick=False)
    assert quick.textures_sizes == {"n_train": 300, "n_val": 150, "n_test": 150} and full.textures_sizes == {}
    assert quick.cmnist_sizes == {"n_train": 600, "n_val": 200, "n_test": 200} and full.cmnist_sizes == {}
    assert (quick.cmnist_epochs, full.cmnist_epochs) == (1, 8)
    assert (quick.textures_probe, full.textures_probe) == ({"epochs": 5}, {})
    assert quick.comparison_methods == full.comparison_methods == ["erm", "dcwp"]
    assert quick.method_configs == {"erm": {"iterations": 20, "eval_every": 10},
                                    "dcwp": {"prune_iterations": 20, "finetune_iterations": 20,
                                             "pretrain_iterations": 20, "eval_every": 10,
                                             "mining": {"iterations": 20}}}
    assert full.method_configs == {"erm": {"iterations": 300, "augment_shift": 2},
                                   "dcwp": {"prune_iterations": 300, "finetune_iterations": 200, "augment_shift": 2,
                                            "mining": {"iterations": 300, "batch_size": 64}}}
    for quick_run in (True, False):
        for method, config in demo_settings(quick_run)["method_configs"].items():
            check_config(method, config)
