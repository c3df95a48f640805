"""A search's settings in parts: each part checks its own settings, the
whole checks how they combine, and the record stays one flat JSON object."""

import json

import pytest

from mpath_tf.errors import ConfigError
from mpath_tf.pipeline.config import (PARTS, DataSettings, MethodSettings, NetworkSettings,
                                      SearchConfig, SelectionSettings, TargetSettings,
                                      TrainingSettings)

# SearchConfig(...).to_dict() as run.json held it before the settings had parts
# (commit c1ea981, one flat dataclass, its own key order).
BEFORE_PARTS = json.loads(
    '{"dataset": "digits", "data_dir": null, "data": null, "label": null, "depth": 4, '
    '"width": 16, "epochs": null, "finetune_epochs": null, "samples": 4, "batch_size": 32, '
    '"learning_rate": 0.001, "seed": 0, "predictor": "pchip", "max_accuracy_drop": 0.01, '
    '"paths": null, "min_accuracy": null, "max_params": null, "max_size_kb": null, '
    '"max_latency_ms": null, "max_ram_kb": null, "max_flash_kb": null, "target": "tflm", '
    '"objective": "params", "final_epochs": null, "workers": 0, "sampling": "even", '
    '"method": "hypernet", "cost": "params", "cost_table": null, "lam": 0.5, "lam_max": 3.0, '
    '"hyper_epochs": null, "strategy": null, "cluster_timeout_s": 300.0, "normalize": true, '
    '"many_classes": false, "finetune_learning_rate": null, "reference": true, "bench": true, '
    '"bench_seconds": 1.0, "model": null, "model_sha256": null, "arch": "mlp"}')


def test_a_record_written_before_the_parts_resumes_unchanged():
    config = SearchConfig.from_dict(BEFORE_PARTS).validate()
    assert config.to_dict() == BEFORE_PARTS
    assert config.part(NetworkSettings) == NetworkSettings(width=16)
    assert config.part(MethodSettings) == MethodSettings(method="hypernet", lam=0.5)


def test_every_setting_belongs_to_exactly_one_part():
    names = [f for part in PARTS for f in part.__dataclass_fields__]
    assert sorted(names) == sorted(SearchConfig.__dataclass_fields__)
    assert len(names) == len(set(names))


@pytest.mark.parametrize("part, settings, message", [
    (DataSettings, {"label": "y"}, "`label` names a column of a CSV file"),
    (NetworkSettings, {"depth": 1}, "`depth` must be >= 2"),
    (TrainingSettings, {"batch_size": 0}, "`batch_size` must be >= 1"),
    (SelectionSettings, {"samples": 1}, "`samples` must be >= 2"),
    (MethodSettings, {"lam_max": 0.0}, "`lam_max` must be > 0"),
    (TargetSettings, {"objective": "speed"}, "speed"),
])
def test_each_part_checks_its_own_settings_alone_and_within_the_whole(part, settings, message):
    with pytest.raises(ConfigError, match=message):
        part(**settings).validate()
    with pytest.raises(ConfigError, match=message):
        SearchConfig(**settings).validate()


def test_the_whole_checks_how_the_parts_combine():
    NetworkSettings(width=6).validate()
    SelectionSettings(paths=7).validate()  # each part alone is fine
    with pytest.raises(ConfigError, match=r"`paths` must be in \[1, `width=6`\]"):
        SearchConfig(width=6, paths=7).validate()
