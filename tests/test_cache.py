"""The fit's feature cache: RAM and disk hold the same float16 features and masks, and the disk files go away."""

import numpy as np
import pytest
import torch

from muflow_cli.nn.feature_cache import FeatureCache


def test_feature_cache_in_memory_and_on_disk_hold_the_same(tmp_path):
    feats = [torch.randn(10, 4, 8, 8), torch.randn(10, 6, 4, 4)]
    masks = [(torch.rand(10, 1, 8, 8) > 0.5).float(), (torch.rand(10, 1, 4, 4) > 0.5).float()]
    for where in ("memory", "disk"):
        with FeatureCache([(4, 8, 8), (6, 4, 4)], 10, where, tmp_path) as cache:
            assert cache.where == where and cache.nbytes == 10 * 2 * (4 * 64 + 6 * 16)
            cache.put(0, [f[:7] for f in feats], [m[:7] for m in masks])
            cache.put(7, [f[7:] for f in feats], [m[7:] for m in masks])
            got = cache.get(np.array([9, 2, 5]), torch.device("cpu"))
            for g, f in zip(got, feats):
                assert g.dtype == torch.float32
                torch.testing.assert_close(g, f[[2, 5, 9]].half().float())  # read in index order
            for g, m in zip(cache.get_masks(np.array([9, 2, 5]), torch.device("cpu")), masks):
                assert torch.equal(g, m[[2, 5, 9]])  # the masks a masked fit keeps, where the features are
        assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):
        FeatureCache([(1, 1, 1)], 1, "cloud")


def test_feature_cache_reads_in_the_layout_asked_for():
    feats = [torch.randn(5, 4, 8, 8)]
    with FeatureCache([(4, 8, 8)], 5, "memory") as cache:
        cache.put(0, feats)
        got = cache.get(np.array([3, 1]), torch.device("cpu"), torch.channels_last)[0]
        assert got.dtype == torch.float32 and got.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(got, feats[0][[1, 3]].half().float())
