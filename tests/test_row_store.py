"""The fit's rows on disk (nn/row_store.py): indexed as numpy indexes the first axis, read back as written."""

import numpy as np
import pytest

from muflow_cli.nn.row_store import PackedMasks, RowStore


@pytest.fixture()
def rows() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (50, 4, 5, 3), dtype=np.uint8)


def test_every_kind_of_index_reads_what_numpy_reads(rows, tmp_path):
    store = RowStore.create(tmp_path / "rows.u8", (4, 5, 3), np.uint8)
    for s in range(0, 50, 7):
        store.append(rows[s : s + 7])
    rng = np.random.default_rng(1)
    indexes = [3, -1, np.int64(7), slice(2, 9), slice(None, None, 3), slice(40, 100), slice(5, 5),
               np.array([5, 3, 3, 49, 0, 1, 2]), rng.permutation(50)[:20], np.sort(rng.permutation(50)[:20]),
               rows[:, 0, 0, 0] > 100, [1, 2], np.array([], np.int64), (slice(None), slice(None), slice(None, None, -1)), (3, 0)]
    for index in indexes:
        assert np.array_equal(store[index], rows[index]), index
    assert np.array_equal(np.asarray(store), rows) and np.array_equal(np.stack(list(store)), rows)
    with pytest.raises(IndexError):
        store[50]
    again = RowStore.open(tmp_path / "rows.u8", (4, 5, 3), np.uint8, 50)
    assert again.shape == rows.shape and np.array_equal(again[10:20], rows[10:20])
    with pytest.raises(ValueError, match="not 51 rows"):
        RowStore.open(tmp_path / "rows.u8", (4, 5, 3), np.uint8, 51)


def test_npy_files_masks_and_slices_written_in_place(tmp_path):
    path = tmp_path / "x.npy"
    written = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(10, 3, 2))
    written[:] = np.random.default_rng(2).normal(size=(10, 3, 2))
    written.flush()
    assert np.array_equal(RowStore.open_npy(path)[::-1], np.load(path)[::-1])
    masks = np.random.default_rng(3).random((30, 12, 12)) > 0.5
    bits = RowStore.temporary((12, 2), np.uint8)
    bits.append(PackedMasks.pack(masks))
    packed = PackedMasks(bits, 12)
    assert packed.shape == masks.shape and packed[np.array([3, 1])].dtype == bool
    assert np.array_equal(packed[np.array([3, 1])], masks[[3, 1]]) and np.array_equal(packed[4], masks[4])
    cache = RowStore.temporary((3,), np.float16, n=10)
    cache[2:4] = np.ones((2, 3))
    assert cache[3].tolist() == [1, 1, 1] and cache[0].tolist() == [0, 0, 0] and len(cache) == 10
