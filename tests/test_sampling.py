"""Adaptive sampling: the next path count is where the fitted accuracy curve
is least certain; a search with --sampling adaptive runs it on KerasTuner."""

import json

import numpy as np

from mpath_tf.pipeline.config import SearchConfig
from mpath_tf.pipeline.sampling import initial_path_counts, next_path_count


def test_start_set_and_next_picks_fill_the_widest_gaps():
    assert initial_path_counts(500) == [2, 32, 500] and initial_path_counts(2) == [2]
    curve = {b: 0.98 - 0.02 * np.log(b) for b in range(2, 201)}
    measured = {b: curve[b] for b in initial_path_counts(200)}  # 2, 20, 200
    picks = []
    for _ in range(5):
        b = next_path_count(measured, 200)
        assert b not in measured
        picks.append(b)
        measured[b] = curve[b]
    # every pick splits a gap in log(b): none next to an earlier sample
    logs = np.log(sorted(measured))
    assert np.diff(logs).max() < np.log(200 / 20)  # the widest start gap was split
    assert next_path_count({2: 0.9, 3: 0.8}, 3) is None  # nothing left
    assert next_path_count({2: 0.9, 4: 0.8}, 4, exclude={3}) is None


def test_search_with_adaptive_sampling(tmp_path):
    from mpath_tf.pipeline.run import search

    config = SearchConfig(depth=3, width=8, epochs=2, finetune_epochs=1, samples=5,
                          batch_size=64, sampling="adaptive", bench=False,
                          reference=False)
    result = search(config, tmp_path / "run")
    sampled = sorted(r["paths"] for r in result["rows"] if r["measured_val_accuracy"] is not None)
    assert len(sampled) == 5 and {2, 4, 8} <= set(sampled)
    trials = [json.loads(p.read_text()) for p in (tmp_path / "run" / "tuner" / "samples").glob(
        "trial_*/trial.json")]
    assert sorted(t["hyperparameters"]["values"]["paths"] for t in trials) == sampled
    # resuming with even sampling is another search: refused by name
    import pytest

    from mpath_tf.errors import ConfigError

    with pytest.raises(ConfigError, match="sampling"):
        search(SearchConfig(**{**config.to_dict(), "sampling": "even"}), tmp_path / "run")
