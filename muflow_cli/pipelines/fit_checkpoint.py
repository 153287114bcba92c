"""Resumable fits: a checkpoint folder beside the output, so a killed fit goes on where it stopped.

Three stages are kept, each written atomically and flushed to disk before it is renamed into place
(inputs/atomic.py, ``fsync=True``: a power cut leaves the previous stage, never half a file), in
formats that load without running code (npz read with ``allow_pickle=False``, safetensors, JSON):

* ``crops.u8`` and ``valid.bits``, then ``faces.npz``, then ``faces.json``: the collected crops (raw uint8 rows,
  written there while they are collected and read back a batch at a time: nn/row_store.py; a 100k-face fit's
  20 GB are never in RAM, nor copied), the crop pixels inside each photo (bits), group ids and capture order;
  file count, skips (the rows are flushed to disk first and the JSON is written last, so it vouches for
  whole files). A checkpoint of format 2 (the crops inside ``faces.npz``) still resumes, its crops in RAM;
* ``split.safetensors``: the calibration and fit masks (stats/splits.py), the Gaussian target of each layer, the report's
  sample of average faces, and the numpy and torch RNG states after the averages;
* ``epoch.safetensors``: after each finished epoch, the flows, Adam's state, the LR schedule,
  the numpy and torch RNG states and the losses so far.

A stage's tensors and its JSON (the safetensors metadata) are one file, replaced in one rename:
a kill can never leave the tensors of one epoch beside the RNG state of another.

The feature cache is not kept: it is recomputed on resume (deterministic; a few seconds per
hundred faces, and up to gigabytes on disk if kept). With every RNG state restored, a resumed
fit computes what an uninterrupted fit computes, value for value.

``settings.json`` holds the fit's settings and inputs; resuming with others is refused, naming
them. The folder is removed once the model is written.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from muflow_cli.errors import UsageError
from muflow_cli.inputs.atomic import atomic_write
from muflow_cli.nn.row_store import PackedMasks, RowStore
from muflow_cli.nn.target import GaussianTarget
from muflow_cli.pipelines.identity import run_settings

FORMAT = "muflow-fit-checkpoint/3"  # 3: the crops are rows on disk beside faces.npz; 2: in it
READS = (FORMAT, "muflow-fit-checkpoint/2")  # formats a resumed fit reads
CROPS_FILE, MASKS_FILE = "crops.u8", "valid.bits"  # the collected faces' rows (fit.collect_faces writes them here)


class FitResumeError(UsageError):
    """The checkpoint on disk belongs to a fit with other settings, or is not a fit checkpoint."""


@dataclass
class SavedFaces:
    """Stage (a): what collecting the faces gave."""

    crops: np.ndarray | RowStore  # (N, S, S, 3) uint8 aligned crops (on disk as the fit collects them)
    groups: np.ndarray  # (N,) group index of each crop (pipelines/fit.py face_groups)
    files: int  # image files read
    skipped: dict[str, int]  # files or faces passed over, by reason
    seconds: float  # time it took
    order: np.ndarray | None = None  # (N,) capture order of each crop's file (None: as collected)
    links: dict[str, int] | None = None  # how the groups were made (stats/near_duplicates.Links)
    valid: np.ndarray | PackedMasks | None = None  # (N, S, S) bool: crop pixels inside the photo (None: all of them)
    sources: list[str] | None = None  # (N,) the file of each crop: calibration files are re-processed for the strata
    owner: np.ndarray | None = None  # (N,) a native fit's face of each row (faces/native.py; None: one row a face)

    def close(self) -> None:
        """Let go of the crop files (a fit's are removed with its checkpoint, or freed when temporary)."""
        for rows in (self.crops, self.valid):
            if isinstance(rows, (RowStore, PackedMasks)):
                rows.close()


@dataclass
class SavedSplit:
    """Stage (b): the calibration split and what the averages of the fit part gave."""

    cal_mask: np.ndarray  # (N,) bool: held out to calibrate
    targets: list[GaussianTarget]  # one per backbone layer
    average_sample: np.ndarray  # (n, 64, 64, 3) uint8 average faces, for the bundle's report
    rng_state: dict[str, Any]  # the numpy Generator's bit_generator.state after the averages
    torch_rng_state: torch.Tensor  # torch's CPU RNG state after the averages
    seconds: float  # time the averages took
    fit_mask: np.ndarray | None = None  # (N,) bool: fitted (None: every face not held out)
    plan: dict[str, Any] | None = None  # the split's kind, groups, calibration groups, gap faces


@dataclass
class SavedEpochs:
    """Stage (c), once restored into the model, optimiser, schedule and RNGs: what else the epochs left."""

    done: int  # epochs finished (0: none kept)
    losses: list[float]  # mean training loss of each
    seconds: float  # training time so far


def checkpoint_path(output: Path) -> Path:
    """Where the checkpoint of a fit writing ``output`` lives: beside it, hidden."""
    output = Path(output)
    return output.with_name(f".{output.name}.muflow-fit")


def fit_settings(config: Any, paths: list[str] | None = None) -> dict[str, Any]:
    """What makes two fits the same fit (pipelines/identity.py): every config field that changes the model, the inputs."""
    return run_settings("fit", None, config, paths)


def _write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda p: Path(p).write_text(json.dumps(obj), encoding="utf-8"), fsync=True)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda p: save_file(tensors, p, metadata={"meta": json.dumps(meta)}), fsync=True)


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """(tensors, meta) of a stage file, or None when the stage was not reached."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads((fh.metadata() or {})["meta"])
    return load_file(str(path)), meta


def _read_meta(path: Path) -> dict[str, Any] | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return json.loads((fh.metadata() or {})["meta"])
    except Exception:  # missing or not a stage file: the stage is not done
        return None


def describe(path: Path) -> str:
    """What a checkpoint folder holds, for the person who pressed Ctrl-C."""
    epoch = _read_meta(Path(path) / "epoch.safetensors")
    if epoch:
        return f"the faces, averages and {epoch['epoch']} epochs are done"
    if _read_meta(Path(path) / "split.safetensors"):
        return "the faces and averages are done"
    if _read_json(Path(path) / "faces.json"):
        return "the faces are collected"
    return "nothing is done yet"


class FitCheckpoint:
    """The checkpoint folder of one fit. ``resume=False`` starts over (an old folder is cleared)."""

    def __init__(self, path: Path, settings: dict[str, Any], resume: bool = False) -> None:
        self.path = Path(path)
        self.settings = settings
        if resume and self.path.is_dir():
            self._check()
        else:
            if self.path.exists():
                if not (self.path / "settings.json").is_file() and any(self.path.iterdir()):
                    raise FitResumeError(f"{self.path} exists and is not a muflow fit checkpoint; choose another checkpoint folder")
                shutil.rmtree(self.path)
            self.path.mkdir(parents=True)
            _write_json(self.path / "settings.json", {"format": FORMAT, "settings": settings})

    def _check(self) -> None:
        head = _read_json(self.path / "settings.json") or {}
        if head.get("format") not in READS:
            raise FitResumeError(f"{self.path} is not a muflow fit checkpoint; delete it or fit without --resume")
        old = head.get("settings", {})
        if old != self.settings:
            changed = sorted(k for k in set(old) | set(self.settings) if old.get(k) != self.settings.get(k))
            raise FitResumeError(
                f"{self.path} was written by a fit with other settings ({', '.join(changed)}); "
                "rerun with the same arguments, or without --resume to start over"
            )

    # -- (a) collected faces ------------------------------------------------------
    def save_faces(self, faces: SavedFaces) -> None:
        """Keep the collected faces. Crops and masks already in this folder (fit.collect_faces writes them
        here) are flushed and recorded, not copied; others (an array) are written here first, a chunk at a time."""
        n, side = len(faces.crops), int(faces.crops.shape[2])
        crops = self._rows_here(faces.crops, CROPS_FILE, (side, side, 3))
        crops.sync()
        masks = None
        if faces.valid is not None:
            packed = faces.valid.bits if isinstance(faces.valid, PackedMasks) else _Packing(faces.valid)
            masks = self._rows_here(packed, MASKS_FILE, (side, (side + 7) // 8))
            masks.sync()

        def write(p: str) -> None:
            with open(p, "wb") as fh:
                order = np.arange(len(faces.groups)) if faces.order is None else faces.order
                owner = {} if faces.owner is None else {"owner": np.asarray(faces.owner, np.int64)}
                np.savez(fh, groups=np.asarray(faces.groups, np.int64), order=np.asarray(order, np.int64), side=np.int64(side), **owner)

        atomic_write(self.path / "faces.npz", write, fsync=True)
        _write_json(self.path / "faces.json", {"files": faces.files, "skipped": dict(faces.skipped), "seconds": faces.seconds,
                                               "links": faces.links, "sources": faces.sources,
                                               "rows": {"faces": n, "side": side, "crops": CROPS_FILE,
                                                        "valid": MASKS_FILE if masks is not None else None}})

    def _rows_here(self, rows, name: str, row_shape: tuple[int, ...]) -> RowStore:
        """``rows`` as the RowStore ``name`` of this folder: itself when it is that file, else a copy written there."""
        if isinstance(rows, RowStore) and rows.path is not None and rows.path.resolve() == (self.path / name).resolve():
            return rows
        out = RowStore.create(self.path / name, row_shape, np.uint8)
        for s in range(0, len(rows), 256):
            out.append(rows[s : s + 256])
        return out

    def load_faces(self) -> SavedFaces | None:
        """The collected faces (their crops on disk, read on demand), or None if that stage was not reached."""
        meta = _read_json(self.path / "faces.json")
        if meta is None or not (self.path / "faces.npz").is_file():
            return None
        with np.load(self.path / "faces.npz", allow_pickle=False) as z:
            if "crops" in z:  # format 2: the crops inside the npz (in RAM, as that fit held them)
                valid = np.unpackbits(z["valid"], axis=-1, count=int(z["side"])).astype(bool) if "valid" in z else None
                crops = z["crops"]
            else:
                rows = meta["rows"]
                n, side = int(rows["faces"]), int(rows["side"])
                try:
                    crops = RowStore.open(self.path / rows["crops"], (side, side, 3), np.uint8, n)
                except (OSError, ValueError):  # rows missing or cut short: the faces are collected again
                    return None
                try:
                    valid = (PackedMasks(RowStore.open(self.path / rows["valid"], (side, (side + 7) // 8), np.uint8, n), side)
                             if rows.get("valid") else None)
                except (OSError, ValueError):
                    crops.close()
                    return None
            return SavedFaces(crops, z["groups"], int(meta["files"]), dict(meta["skipped"]), float(meta["seconds"]),
                              z["order"], meta.get("links"), valid, meta.get("sources"), z["owner"] if "owner" in z else None)

    # -- (b) split, targets, averages sample ----------------------------------------
    def save_split(self, split: SavedSplit) -> None:
        tensors = {f"target{j}.{k}": v for j, t in enumerate(split.targets) for k, v in t.state_dict().items()}
        tensors["cal_mask"] = torch.from_numpy(np.asarray(split.cal_mask, np.uint8))
        fit_mask = ~np.asarray(split.cal_mask, bool) if split.fit_mask is None else split.fit_mask
        tensors["fit_mask"] = torch.from_numpy(np.asarray(fit_mask, np.uint8))
        tensors["averages_sample"] = torch.from_numpy(np.ascontiguousarray(split.average_sample))
        tensors["torch_rng"] = split.torch_rng_state
        _write_tensors(self.path / "split.safetensors", tensors,
                       {"layers": len(split.targets), "rng": split.rng_state, "seconds": split.seconds, "plan": split.plan})

    def load_split(self) -> SavedSplit | None:
        """The split and targets, or None if that stage was not reached. Sets no RNG: the caller restores them."""
        stage = _read_tensors(self.path / "split.safetensors")
        if stage is None:
            return None
        t, meta = stage
        targets = []
        for j in range(meta["layers"]):
            state = {k.split(".", 1)[1]: v for k, v in t.items() if k.startswith(f"target{j}.")}
            target = GaussianTarget(state["mu"].shape[0])
            target.load_state_dict(state)
            targets.append(target)
        return SavedSplit(t["cal_mask"].numpy().astype(bool), targets, t["averages_sample"].numpy(), meta["rng"],
                          t["torch_rng"], float(meta["seconds"]), t["fit_mask"].numpy().astype(bool), meta.get("plan"))

    # -- (c) epochs -----------------------------------------------------------------
    def save_epoch(self, epoch: int, model: torch.nn.Module, opt: torch.optim.Optimizer, sched, rng: np.random.Generator,
                   losses: list[float], seconds: float) -> None:
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        opt_state = opt.state_dict()
        for i, st in opt_state["state"].items():
            for name, v in st.items():
                tensors[f"opt.{i}.{name}"] = v if isinstance(v, torch.Tensor) else torch.tensor(v)
        tensors["torch_rng"] = torch.get_rng_state()
        _write_tensors(self.path / "epoch.safetensors", tensors, {
            "epoch": epoch, "losses": losses, "seconds": seconds, "rng": rng.bit_generator.state,
            "param_groups": opt_state["param_groups"], "opt_ids": sorted(int(i) for i in opt_state["state"]),
            "sched": sched.state_dict(),
        })

    def load_epoch(self, model: torch.nn.Module, opt: torch.optim.Optimizer, sched, rng: np.random.Generator) -> SavedEpochs:
        """Restore the last finished epoch into ``model``, ``opt``, ``sched``, ``rng`` and torch's RNG (nothing if none is kept)."""
        stage = _read_tensors(self.path / "epoch.safetensors")
        if stage is None:
            return SavedEpochs(0, [], 0.0)
        t, meta = stage
        device = next(model.parameters()).device
        model.load_state_dict({k[len("model."):]: v for k, v in t.items() if k.startswith("model.")})
        state = {}
        for i in meta["opt_ids"]:
            prefix = f"opt.{i}."
            state[i] = {k[len(prefix):]: v.to(device) if k[len(prefix):] != "step" else v
                        for k, v in t.items() if k.startswith(prefix)}
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        sched.load_state_dict(meta["sched"])
        rng.bit_generator.state = meta["rng"]
        torch.set_rng_state(t["torch_rng"])
        return SavedEpochs(int(meta["epoch"]), [float(x) for x in meta["losses"]], float(meta["seconds"]))

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class _Packing:
    """Bool masks (an array) read as their packed bits, a slice at a time: what ``_rows_here`` copies."""

    def __init__(self, masks) -> None:
        self.masks = masks

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index) -> np.ndarray:
        return PackedMasks.pack(self.masks[index])
