"""Benchmark 5 — one training step of the flows on the fp16 feature cache, against the matmul peak.

    python benchmarks/fit_step.py                          # the default variants, 5 rounds
    python benchmarks/fit_step.py --variants today b32-cl  # a few of them
    python benchmarks/fit_step.py --compile                # also torch.compile (minutes of compilation)
    python benchmarks/fit_step.py --smoke                  # seconds: today and b8-cl, 16 faces, one round

A step is what the fit's training (``nn.training.train_step``, then the schedule) does per batch:
read a batch of faces from a synthetic float16 cache of the default model's shapes (24x64x64,
32x32x32, 96x16x16), flows forward, mean score, backward, grad-norm clip, Adam, cosine schedule.
FLOPs per face (forward + backward) are counted with torch.utils.flop_counter; the peak is the best of ten 2048x2048 fp32 matmuls
in the same process, measured before and after. The machine is shared: the variants run
round-robin (the order rotates each round), each round times every variant on the same
faces, and the table gives medians over rounds of faces/s and of the ratio to ``today``
(batch 16, contiguous layout, the layer-by-layer flow: the step before issue #14) *in the same
round*.

Variants (name: what changes against ``today``):
- b<N>: batch N (the learning rate plays no part in speed); -cl: channels_last maps and conv
  weights; -lw: the layer-by-layer flow forward (normflows modules in turn) instead of the
  fused one; -t1: one intra-op thread; -nomkldnn: torch.backends.mkldnn off (im2col + GEMM);
  -get32: the cache converts to float32 first, then to channels_last (two copies; the fit
  does one); -compile: torch.compile of the loss (inductor), compile time reported apart; -bf16: bfloat16
  autocast of the forward (speed only: whether a bf16-trained model scores within tolerance is
  benchmarks/fit_epochs.py's question, not this one's).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from muflow_cli.nn.feature_cache import FeatureCache
from muflow_cli.nn.flow_model import MuFlowModel
from muflow_cli.nn.target import GaussianTarget

CHANNELS = [24, 32, 96]
SHAPES = [(24, 64, 64), (32, 32, 32), (96, 16, 16)]
DEFAULT_VARIANTS = ["today", "b16-lw", "b16", "b16-cl-lw", "b16-cl", "b32-cl", "b64-cl", "b128-cl", "b64",
                    "b16-cl-get32", "b16-cl-t1", "b16-cl-nomkldnn", "b16-cl-bf16", "b32-cl-bf16"]


def matmul_peak(n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def parse(name: str) -> dict:
    if name == "today":
        name = "b16-lw"
    parts = name.split("-")
    return {"batch": int(parts[0][1:]), "cl": "cl" in parts, "layerwise": "lw" in parts, "threads": 1 if "t1" in parts else None,
            "mkldnn": "nomkldnn" not in parts, "get32": "get32" in parts, "compile": "compile" in parts,
            "bf16": "bf16" in parts}


def build(seed: int = 0) -> MuFlowModel:
    """The default flows over Gaussian targets fitted on random pooled vectors; weights nudged off the identity."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = MuFlowModel(CHANNELS)
    for tgt, c in zip(model.targets, CHANNELS):
        tgt.load_state_dict(GaussianTarget.fit(rng.normal(size=(4 * c, c))).state_dict())
    with torch.no_grad():
        for p in model.flows.parameters():
            p.add_(0.02 * torch.randn_like(p))  # a trained flow is not the identity: keep exp/atan away from 0
    return model


def make_cache(n: int, seed: int = 0) -> FeatureCache:
    cache = FeatureCache(SHAPES, n, "memory")
    g = torch.Generator().manual_seed(seed)
    for s in range(0, n, 64):
        cache.put(s, [torch.randn(min(64, n - s), *shape, generator=g) for shape in SHAPES])
    return cache


def get(cache: FeatureCache, idx: np.ndarray, v: dict) -> list[torch.Tensor]:
    if not v["cl"]:
        return cache.get(idx, torch.device("cpu"))
    if v["get32"]:
        return [f.contiguous(memory_format=torch.channels_last) for f in cache.get(idx, torch.device("cpu"))]
    return cache.get(idx, torch.device("cpu"), torch.channels_last)


def layerwise(flow):
    """The flow's forward as the normflows layers in turn (``forward_layers``); the model calls it with
    ``per_position`` (False: the training here is unmasked, whole-map log-dets)."""

    def forward(x: torch.Tensor, per_position: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        if per_position:
            raise ValueError("the layer-by-layer flow gives no per-position log-det")
        return flow.forward_layers(x)

    return forward


def _bf16(loss, feats):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return loss(feats).float()


class Runner:
    """One variant's model, optimiser and step, built once and reused every round."""

    def __init__(self, name: str, cache: FeatureCache, faces: int) -> None:
        self.name, self.v, self.cache, self.faces = name, parse(name), cache, faces
        self.model = build()
        if self.v["cl"]:
            self.model = self.model.to(memory_format=torch.channels_last)
        if self.v["layerwise"]:
            for flow in self.model.flows:
                flow.forward = layerwise(flow)
        self.opt = torch.optim.Adam(self.model.flows.parameters(), lr=1e-4, weight_decay=1e-5)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=10**6)
        self.loss = lambda feats: self.model(feats)["score"].mean()
        if self.v["bf16"]:  # bf16 autocast of the flows' forward (backward follows it); the loss is summed in fp32
            fp32_loss = self.loss
            self.loss = lambda feats: _bf16(fp32_loss, feats)
        self.compile_s = 0.0
        if self.v["compile"]:
            self.loss = torch.compile(self.loss)
            t = time.perf_counter()
            with self.settings():
                self.step(np.arange(self.v["batch"]))
            self.compile_s = time.perf_counter() - t
        self.rng = np.random.default_rng(0)

    def settings(self):
        v = self.v
        old = torch.get_num_threads()

        class Ctx:
            def __enter__(self_):
                if v["threads"]:
                    torch.set_num_threads(v["threads"])
                self_.mk = torch.backends.mkldnn.flags(enabled=v["mkldnn"])
                self_.mk.__enter__()

            def __exit__(self_, *exc):
                self_.mk.__exit__(*exc)
                torch.set_num_threads(old)

        return Ctx()

    def step(self, idx: np.ndarray) -> float:
        loss = self.loss(get(self.cache, idx, self.v))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.flows.parameters(), 10.0)
        self.opt.step()
        self.sched.step()
        return float(loss.detach())

    def faces_per_s(self) -> float:
        """Faces per second over ``faces`` faces (one warm-up step first)."""
        b = self.v["batch"]
        with self.settings():
            order = self.rng.permutation(self.cache.n)
            self.step(order[:b])
            t = time.perf_counter()
            for s in range(0, self.faces, b):
                self.step(order[s : s + b])
            return self.faces / (time.perf_counter() - t)


def flops_per_face(cache: FeatureCache) -> float:
    model = build()
    feats = cache.get(np.arange(4), torch.device("cpu"))
    with FlopCounterMode(display=False) as counter:
        model(feats)["score"].mean().backward()
    return counter.get_total_flops() / 4


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
    ap.add_argument("--cache-faces", type=int, default=512, help="faces in the synthetic fp16 cache")
    ap.add_argument("--faces", type=int, default=256, help="faces trained per timing (a multiple of every batch)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="add b32-cl-compile (inductor; compilation takes minutes on 2 cores)")
    ap.add_argument("--smoke", action="store_true", help="a check that it runs, in seconds: today and b8-cl, a 16-face cache, "
                    "16 faces per timing, one round (numbers meaningless)")
    args = ap.parse_args()
    if args.smoke:
        args.variants, args.cache_faces, args.faces, args.rounds, args.compile = ["b8-cl"], 16, 16, 1, False
    variants = list(dict.fromkeys(["today", *args.variants, *(["b32-cl-compile"] if args.compile else [])]))
    peak = matmul_peak()
    cache = make_cache(args.cache_faces)
    gflop = flops_per_face(cache) / 1e9
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 matmul peak {peak:.0f} GFLOP/s; "
          f"{gflop:.2f} GFLOP per face per step (fwd+bwd); {args.faces} faces per timing, {args.rounds} rounds", flush=True)
    runners = {}
    for name in variants:
        runners[name] = Runner(name, cache, args.faces)
        if runners[name].compile_s:
            print(f"{name}: compiled in {runners[name].compile_s:.0f} s", flush=True)
    rates: dict[str, list[float]] = {n: [] for n in variants}
    ratios: dict[str, list[float]] = {n: [] for n in variants}
    for r in range(args.rounds):
        order = variants[r % len(variants):] + variants[: r % len(variants)]
        this = {n: runners[n].faces_per_s() for n in order}
        for n in variants:
            rates[n].append(this[n])
            ratios[n].append(this[n] / this["today"])
        print(f"round {r + 1}: " + ", ".join(f"{n} {this[n]:.1f}" for n in variants), flush=True)
    peak = max(peak, matmul_peak())
    print(f"\npeak (best of before/after) {peak:.0f} GFLOP/s\n")
    print("| variant | batch | channels_last | flow forward | faces/s (median) | GFLOP/s | % of peak | vs today, same round (median) |")
    print("|---|---|---|---|---|---|---|---|")
    for n in variants:
        v, rate = parse(n), statistics.median(rates[n])
        extra = ", ".join(k for k in ("t1", "nomkldnn", "get32", "compile", "bf16") if k in n.split("-"))
        print(f"| {n} | {v['batch']} | {'yes' if v['cl'] else 'no'} | {'layer by layer' if v['layerwise'] else 'fused'}"
              f"{' (' + extra + ')' if extra else ''} | {rate:.1f} | {rate * gflop:.0f} | {100 * rate * gflop / peak:.0f} % | "
              f"{statistics.median(ratios[n]):.2f}x |")
    cache.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
