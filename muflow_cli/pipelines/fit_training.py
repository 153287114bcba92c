"""The fit's training of the flows on the feature cache, and the probe that times it beforehand.

Both run nn/training.py's ``train_step`` in its ``training_layout``: the probe measures the very step
the loop then takes.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from muflow_cli.nn.feature_cache import FeatureCache
from muflow_cli.nn.flow_model import MuFlowModel
from muflow_cli.nn.training import flows_optimizer, train_step, training_layout
from muflow_cli.pipelines.fit_checkpoint import FitCheckpoint
from muflow_cli.pipelines.fit_config import FitConfig, FitError, FitReport, copies_per_face
from muflow_cli.progress import track


def estimate_seconds(backbone, crops, report: FitReport, config: FitConfig, device: torch.device) -> dict[str, float]:
    """Time of each remaining stage, from a short timed probe on this machine (a few seconds, not a guess).

    One batch of fit crops through the backbone gives seconds per image (averages, features, calibration);
    two training steps of throw-away flows on its features give seconds per face per epoch. The probe
    runs on a forked RNG, so the fit itself is exactly what it would be without it."""
    batch = torch.from_numpy(crops[np.arange(min(config.batch_size, len(crops)))])
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        t = time.perf_counter()
        feats, masks = (backbone(batch, torch.ones(batch.shape[:3], dtype=torch.uint8)) if config.masked
                        else (backbone(batch), None))
        per_image = (time.perf_counter() - t) / len(batch)
        flows = MuFlowModel(backbone.channels, config.flow).to(device).train()
        with training_layout(flows, device, report.precision == "bf16") as layout:
            opt = flows_optimizer(flows, config.lr, config.weight_decay)
            steps = []
            for _ in range(2):  # the first step pays one-off costs
                t = time.perf_counter()
                # The whole step of the loop, gradient clipping included: it costs a little (a norm over
                # every gradient), and leaving it out would time a step the fit never takes. The float16
                # round trip and the layout change stand for the cache's read.
                train_step(flows, [f.half().float().contiguous(memory_format=layout) for f in feats], opt,
                           [m.clone() for m in masks] if masks is not None else None)  # out of inference mode, as the cache's
                steps.append(time.perf_counter() - t)
    per_face_step = steps[-1] / len(batch)
    copies = copies_per_face(config)
    out = {
        "averages": report.averages * per_image,
        "features": report.fit_faces * copies * per_image,
        "training": report.epochs * report.fit_faces * copies * per_face_step,
        "calibration": report.calibration_faces * per_image * 1.5,  # backbone + flows forward
    }
    out["total"] = sum(out.values())
    return out


def train_flows(model: MuFlowModel, cache: FeatureCache, config: FitConfig, report: FitReport, rng: np.random.Generator,
                device: torch.device, progress: bool, checkpoint: FitCheckpoint | None = None) -> MuFlowModel:
    """Adam with a cosine schedule over ``report.epochs`` epochs of the cached features.

    The layout and precision of the steps are nn/training.py's ``training_layout``; the model comes back in
    the default layout and float32, in eval mode. ``checkpoint``: the epochs it holds are restored first, and
    each finished epoch is saved to it, so that a resumed fit computes what an uninterrupted one does."""
    t = time.perf_counter()
    n = report.training_faces or report.fit_faces
    with training_layout(model, device, report.precision == "bf16") as layout:
        opt = flows_optimizer(model, config.lr, config.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=report.epochs * math.ceil(n / config.batch_size))
        done = _restore_epochs(checkpoint, model, opt, sched, rng, report)
        model.train()
        for epoch in track(range(done, report.epochs), "training", enabled=progress):
            report.losses.append(_epoch(model, cache, opt, sched, rng.permutation(n), config.batch_size, device, layout))
            if not math.isfinite(report.losses[-1]):
                raise FitError("training diverged (non-finite loss); try a smaller --lr")
            if checkpoint is not None:
                checkpoint.save_epoch(epoch + 1, model, opt, sched, rng, report.losses,
                                      report.seconds.get("training", 0.0) + time.perf_counter() - t)
    model.eval()
    report.seconds["training"] = report.seconds.get("training", 0.0) + time.perf_counter() - t
    return model


def _epoch(model: MuFlowModel, cache: FeatureCache, opt, sched, order: np.ndarray, batch: int, device: torch.device,
           layout: torch.memory_format) -> float:
    """One pass over the cache in ``order``, a scheduled step a batch; the mean loss per face."""
    total = 0.0
    for s in range(0, len(order), batch):
        idx = order[s : s + batch]
        loss = train_step(model, cache.get(idx, device, layout), opt, cache.get_masks(idx, device))
        sched.step()
        total += float(loss) * len(idx)
    return total / len(order)


def _restore_epochs(checkpoint: FitCheckpoint | None, model, opt, sched, rng, report: FitReport) -> int:
    """Epochs already done (0 without a checkpoint); restores flows, optimiser, schedule, RNGs, losses."""
    if checkpoint is None:
        return 0
    saved = checkpoint.load_epoch(model, opt, sched, rng)
    report.losses[:] = saved.losses
    if saved.done:
        report.seconds["training"] = saved.seconds
    return saved.done
