"""Average faces: k distinct crops each, M in all, in uint8 like single crops; the plan adapts to small sets."""

import numpy as np
import pytest

from muflow_cli.nn.averages import average_faces, default_average_plan


def test_each_average_is_the_rounded_mean_of_k_distinct_crops():
    crops = np.stack([np.full((4, 4, 3), 10 * i, np.uint8) for i in range(10)])
    batches = list(average_faces(crops, k=3, m=7, rng=np.random.default_rng(0), batch=4))
    assert [len(b) for b in batches] == [4, 3] and all(b.dtype == np.uint8 for b in batches)
    rng = np.random.default_rng(0)
    expected = [np.clip(crops[rng.choice(10, 3, replace=False)].mean(0, dtype=np.float32) + 0.5, 0, 255).astype(np.uint8) for _ in range(7)]
    np.testing.assert_array_equal(np.concatenate(batches), np.stack(expected))
    for avg in np.concatenate(batches):
        assert avg.min() == avg.max()  # flat crops average to a flat crop


def test_the_plan_adapts_to_small_folders():
    assert default_average_plan(70_000) == (500, 1000)
    assert default_average_plan(40) == (10, 80)
    assert default_average_plan(10) == (2, 64)
    with pytest.raises(ValueError):
        default_average_plan(5, k=6)
