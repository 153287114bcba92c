"""Rows of one shape and dtype in a flat file on disk: the fit's crops, pixel masks and on-disk feature cache.

Why: a fit's crops take 196 KiB a face at 256 px (100k faces: 20 GB), its features 304 KiB; held in RAM
they make the fit's memory grow with its faces. Here rows are appended as they are found and read back
by index with positioned reads (``os.preadv``): the process holds only the rows it asked for, and the
operating system's page cache keeps what fits. Not ``np.memmap``: every page of a mapping the fit
touches would count in its resident memory until the kernel reclaims it, so a pass over 20 GB of crops
would look like 20 GB of RSS; a read copies the rows out and leaves the pages to the page cache.

Indexing follows numpy's for the first axis (an int, a slice, an int array in any order with repeats,
a bool mask) and returns fresh arrays. Contiguous rows are read in one call, so a slice or a sorted
batch costs one read per run of neighbouring rows.
"""

from __future__ import annotations

import math
import operator
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


class RowStore:
    """(n, *row_shape) ``dtype`` rows in a file, from byte ``offset`` on; see the module docstring."""

    def __init__(self, fh: BinaryIO, row_shape: tuple[int, ...], dtype: Any, n: int = 0, offset: int = 0,
                 path: Path | None = None) -> None:
        self._fh, self.row_shape, self.dtype = fh, tuple(int(s) for s in row_shape), np.dtype(dtype)
        self.n, self.offset, self.path = int(n), int(offset), path
        self.row_bytes = self.dtype.itemsize * math.prod(self.row_shape)
        self._lock = threading.Lock()  # for the seek-and-read fallback where there is no preadv

    # -- making one -----------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, row_shape: tuple[int, ...], dtype: Any, n: int = 0) -> RowStore:
        """A new file at ``path`` (replacing one there), ``n`` rows of zeros long, to append or write to."""
        fh = open(path, "w+b")  # noqa: SIM115 - the store owns the handle until close()
        store = cls(fh, row_shape, dtype, 0, 0, Path(path))
        store.resize(n)
        return store

    @classmethod
    def temporary(cls, row_shape: tuple[int, ...], dtype: Any, n: int = 0, directory: Path | None = None) -> RowStore:
        """A store in a nameless temporary file in ``directory`` (default: the system's temporary folder).

        The file has no name (POSIX): the system frees its space when the store is closed or the process
        ends, however it ends; a killed fit leaves no gigabytes behind."""
        fh = tempfile.TemporaryFile(prefix="muflow-rows-", dir=directory)  # noqa: SIM115
        store = cls(fh, row_shape, dtype, 0, 0, None)
        store.resize(n)
        return store

    @classmethod
    def open(cls, path: Path, row_shape: tuple[int, ...], dtype: Any, n: int | None = None, offset: int = 0) -> RowStore:
        """The rows of an existing file, read-only; ``n`` (when known) must match its size."""
        fh = open(path, "rb")  # noqa: SIM115
        store = cls(fh, row_shape, dtype, 0, offset, Path(path))
        size = os.fstat(fh.fileno()).st_size - offset
        if size < 0 or (store.row_bytes and size % store.row_bytes) or (n is not None and size != n * store.row_bytes):
            fh.close()
            raise ValueError(f"{path} holds {size} bytes of rows of {store.row_bytes} bytes"
                             + (f", not {n} rows" if n is not None else ""))
        store.n = size // store.row_bytes if store.row_bytes else 0
        return store

    @classmethod
    def open_npy(cls, path: Path) -> RowStore:
        """The rows of a C-ordered .npy file (as ``np.lib.format.open_memmap`` writes them), read without mapping it."""
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"{path}: .npy format {version} is not read here")
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(fh)
            offset = fh.tell()
        if fortran or not shape:
            raise ValueError(f"{path}: rows need a C-ordered array of at least one dimension")
        return cls.open(Path(path), tuple(shape[1:]), dtype, shape[0], offset)

    # -- what it is -------------------------------------------------------------------
    def __len__(self) -> int:
        return self.n

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.n, *self.row_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.row_shape)

    @property
    def nbytes(self) -> int:
        return self.n * self.row_bytes

    def __repr__(self) -> str:
        return f"RowStore({self.shape}, {self.dtype}, {self.path or 'temporary'})"

    # -- writing ----------------------------------------------------------------------
    def resize(self, n: int) -> None:
        """Make the store ``n`` rows long (new rows read as zeros; the file is sparse until written)."""
        os.ftruncate(self._fh.fileno(), self.offset + n * self.row_bytes)
        self.n = int(n)

    def append(self, rows: np.ndarray) -> None:
        """Add ``rows`` (k, *row_shape) at the end."""
        start = self.n
        self.n += len(rows)
        self.write(start, rows)

    def write(self, start: int, rows: np.ndarray) -> None:
        """Put ``rows`` at rows ``start``... (the store grows when they run past its end)."""
        rows = np.ascontiguousarray(rows, self.dtype)
        if tuple(rows.shape[1:]) != self.row_shape:
            raise ValueError(f"rows must be (k, {', '.join(map(str, self.row_shape))}), got {rows.shape}")
        self.n = max(self.n, start + len(rows))
        data, pos = memoryview(rows).cast("B"), self.offset + start * self.row_bytes
        while len(data):
            if hasattr(os, "pwrite"):
                done = os.pwrite(self._fh.fileno(), data, pos)
            else:
                with self._lock:
                    self._fh.seek(pos)
                    done = self._fh.write(data)
            data, pos = data[done:], pos + done

    def __setitem__(self, index: slice, rows: np.ndarray) -> None:
        """``store[a:b] = rows``: a contiguous slice only (what a cache filled in order writes)."""
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("a RowStore is written by contiguous slices")
        start, stop, _ = index.indices(self.n)
        if stop - start != len(rows):
            raise ValueError(f"{len(rows)} rows for a slice of {stop - start}")
        self.write(start, rows)

    def sync(self) -> None:
        """Flush the rows to the disk (a checkpoint trusts them after a power cut)."""
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    # -- reading ----------------------------------------------------------------------
    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, tuple):  # store[rows, ...]: the rows, then the rest of the index on them
            head, rest = (index[0] if index else slice(None)), index[1:]
            rows = self[head]
            return rows[rest] if _is_int(head) else rows[(slice(None), *rest)]
        if _is_int(index):
            i = operator.index(index)
            if not -self.n <= i < self.n:
                raise IndexError(f"row {i} of {self.n}")
            i %= self.n
            out = np.empty((1, *self.row_shape), self.dtype)
            self._read_run(i, 1, out)
            return out[0]
        if isinstance(index, slice):
            start, stop, step = index.indices(self.n)
            if step == 1:
                out = np.empty((max(0, stop - start), *self.row_shape), self.dtype)
                if len(out):
                    self._read_run(start, len(out), out)
                return out
            index = np.arange(start, stop, step)
        idx = np.asarray(index)
        if idx.dtype == bool:
            if idx.shape != (self.n,):
                raise IndexError(f"a mask of {idx.shape} for {self.n} rows")
            idx = np.flatnonzero(idx)
        elif idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise IndexError(f"rows are indexed by integers or a mask, not {idx.dtype}")
        idx = idx.astype(np.int64).ravel()
        if idx.size and (idx.min() < -self.n or idx.max() >= self.n):
            raise IndexError(f"rows out of range for {self.n} rows")
        return self._gather(np.where(idx < 0, idx + self.n, idx))

    def __iter__(self):
        for s in range(0, self.n, 64):
            yield from self[s : s + 64]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """Every row in RAM: only on explicit request (``np.asarray(store)``); the fit itself never asks."""
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def _gather(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` in that order; each run of neighbouring rows is one read."""
        out = np.empty((len(idx), *self.row_shape), self.dtype)
        if not len(idx):
            return out
        increasing = bool(np.all(np.diff(idx) > 0))
        order = np.arange(len(idx)) if increasing else np.argsort(idx, kind="stable")
        rows = idx[order]
        cuts = np.flatnonzero(np.diff(rows) > 1) + 1  # runs of neighbouring (or repeated) rows
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(rows)]):
            first, count = int(rows[lo]), int(rows[hi - 1] - rows[lo]) + 1
            if increasing:  # the run's rows are out[lo:hi], in place
                self._read_run(first, count, out[lo:hi])
            else:
                run = np.empty((count, *self.row_shape), self.dtype)
                self._read_run(first, count, run)
                out[order[lo:hi]] = run[rows[lo:hi] - first]
        return out

    def _read_run(self, first: int, count: int, into: np.ndarray) -> None:
        """Rows first..first+count-1 into the C-contiguous ``into``."""
        view, pos = memoryview(into).cast("B"), self.offset + first * self.row_bytes
        while len(view):
            if hasattr(os, "preadv"):
                got = os.preadv(self._fh.fileno(), [view], pos)
            else:
                with self._lock:
                    self._fh.seek(pos)
                    got = self._fh.readinto(view)
            if not got:
                raise OSError(f"{self!r}: the file ends before row {first + count - 1}")
            view, pos = view[got:], pos + got


class PackedMasks:
    """(n, S, S) bool masks kept as bits along their last axis (``np.packbits``): 8 KiB a 256-px face, not 64.

    Indexed by rows as a RowStore is; each read unpacks only the rows it returns."""

    def __init__(self, bits: RowStore | np.ndarray, side: int) -> None:
        self.bits, self.side = bits, int(side)

    @classmethod
    def pack(cls, masks: np.ndarray) -> np.ndarray:
        return np.packbits(np.asarray(masks, bool), axis=-1)

    def __len__(self) -> int:
        return len(self.bits)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.bits), self.side, self.side)

    ndim = 3
    dtype = np.dtype(bool)

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, tuple):
            raise TypeError("PackedMasks are indexed by rows only")
        return np.unpackbits(self.bits[index], axis=-1, count=self.side).view(bool)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def close(self) -> None:
        if isinstance(self.bits, RowStore):
            self.bits.close()


def _is_int(index: Any) -> bool:
    return isinstance(index, (int, np.integer)) and not isinstance(index, bool)
