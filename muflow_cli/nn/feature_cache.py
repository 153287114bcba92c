"""The fit's feature cache: backbone features of every fit face, computed once, in float16.

Why a cache: the backbone is frozen, so running it again every epoch is waste (1.43x per epoch
for the default model, benchmarks/fit_cache.py). Why float16: features are layer-normalised
(unit scale), so half precision keeps ~3 significant digits at half the bytes.
Why on disk sometimes: the default model's features take 304 KiB per face, 3 GB for 10k faces.
The cache stays in RAM while it needs at most half of the memory available; beyond that (or
when asked) it is nameless temporary files (nn/row_store.py; one per layer, and one per layer of the
masks a masked fit keeps), freed when the fit ends however it ends, and each batch reads its faces
from them: the operating system keeps in its page cache what fits, and the fit's own memory stays
flat in the number of faces (a memory map would count every page read in the fit's resident memory).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from muflow_cli.choices import CACHE_PLACES  # re-exported
from muflow_cli.nn.row_store import RowStore


def available_memory() -> int | None:
    """Bytes of memory available without swapping (Linux MemAvailable; else free pages; None if unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


class FeatureCache:
    """One float16 array per layer, (n, C, H, W), in RAM or in a temporary file (a RowStore)."""

    def __init__(self, shapes: list[tuple[int, int, int]], n: int, where: str = "auto", directory: Path | None = None) -> None:
        if where not in CACHE_PLACES:
            raise ValueError(f"cache must be one of {', '.join(CACHE_PLACES)}, not {where!r}")
        self.n = n
        self.bytes_per_face = sum(2 * math.prod(s) for s in shapes)
        avail = available_memory()
        self.on_disk = where == "disk" or (where == "auto" and avail is not None and n * self.bytes_per_face > avail // 2)
        self.directory = directory
        self.arrays: list[np.ndarray | RowStore] = (
            [RowStore.temporary(s, np.float16, n, directory) for s in shapes] if self.on_disk
            else [np.empty((n, *s), dtype=np.float16) for s in shapes])
        self.masks: list[np.ndarray | RowStore] | None = None

    @property
    def nbytes(self) -> int:
        return self.n * self.bytes_per_face

    @property
    def where(self) -> str:
        return "disk" if self.on_disk else "memory"

    def put(self, start: int, feats: list[torch.Tensor], masks: list[torch.Tensor] | None = None) -> None:
        """Features of faces ``start``...; ``masks`` (a masked fit): the positions each face is scored on,
        kept where the features are (5 KiB a face for the default model, where its features take 304 KiB)."""
        for arr, f in zip(self.arrays, feats):
            arr[start : start + len(f)] = f.detach().to(torch.float16).cpu().numpy()
        if masks is not None:
            if self.masks is None:
                self.masks = [RowStore.temporary(m.shape[2:], bool, self.n, self.directory) if self.on_disk
                              else np.zeros((self.n, *m.shape[2:]), bool) for m in masks]
            for arr, m in zip(self.masks, masks):
                arr[start : start + len(m)] = m[:, 0].detach().cpu().numpy() > 0

    def get_masks(self, idx: np.ndarray, device: torch.device) -> list[torch.Tensor] | None:
        """(B, 1, H, W) float masks of faces ``idx`` (in the order :meth:`get` reads them); None: unmasked."""
        if self.masks is None:
            return None
        idx = np.sort(np.asarray(idx))
        return [torch.from_numpy(arr[idx][:, None].astype(np.float32)).to(device) for arr in self.masks]

    def get(self, idx: np.ndarray, device: torch.device, memory_format: torch.memory_format = torch.contiguous_format) -> list[torch.Tensor]:
        """float32 features of faces ``idx`` (read in index order: sequential reads from a file).

        ``memory_format``: the layout the float32 copy is written in (training on CPU asks for
        channels_last); the conversion and the layout change are one copy.
        """
        idx = np.sort(np.asarray(idx))
        return [torch.from_numpy(np.ascontiguousarray(arr[idx])).to(device).to(torch.float32, memory_format=memory_format) for arr in self.arrays]

    def close(self) -> None:
        for arr in [*self.arrays, *(self.masks or [])]:
            if isinstance(arr, RowStore):
                arr.close()
        self.arrays, self.masks = [], None

    def __enter__(self) -> "FeatureCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
