"""How many actors of each kind a Ray scan runs, and what each asks Ray for, from the cluster's totals."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RayPlan:
    """Actors and the resources each asks Ray for. ``scorers == 0``: the face actors score too (ScanParts)."""

    face_actors: int
    face_cpus: float
    scorers: int
    score_cpus: float
    score_gpus: float
    score_threads: int

    @property
    def fused(self) -> bool:
        return self.scorers == 0

    def describe(self) -> str:
        if self.fused:
            return f"{_n(self.face_actors, 'actor')} finding and scoring faces ({self.face_cpus:g} CPU, 1 scoring thread each)"
        where = f"{self.score_gpus:g} GPU" if self.score_gpus else f"{self.score_cpus:g} CPU, {_n(self.score_threads, 'thread')}"
        return f"{_n(self.face_actors, 'face actor')} ({self.face_cpus:g} CPU each), {_n(self.scorers, 'scoring actor')} ({where} each)"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def plan(cpus: float, gpus: float, device: str = "auto", face_actors: int = 0, scorers: int = 0) -> RayPlan:
    """Actors and resources from the cluster's totals.

    GPUs (and ``device`` not cpu): one scoring actor per GPU (with a CPU to feed it); the other CPUs
    find faces. CPU only: one actor per CPU that finds and scores faces (ScanParts: scoring's share of the
    work moves with the faces per photo, 43 % at 3.52, 18 % at 1; docs/scale.md), unless ``scorers``
    asks for separate scoring actors (each then gets a CPU while they fit in half the CPUs). Asking for
    more actors than fit makes them share the CPUs (fractional requests), as the local scan's threads
    share the cores.
    """
    cpus = max(float(cpus), 1.0)
    on_gpu = gpus >= 1 and device != "cpu"
    if not on_gpu and not scorers:
        face = face_actors or max(1, int(cpus))
        return RayPlan(face, round(min(1.0, cpus / face), 4), 0, 0.0, 0.0, 1)
    n_score = scorers or int(gpus)
    score_cpus = 1.0 if n_score <= cpus / 2 else cpus / (2 * n_score)
    left = cpus - n_score * score_cpus
    face = face_actors or max(1, int(left))
    return RayPlan(face, round(min(1.0, left / face), 4), n_score, round(score_cpus, 4), 1.0 if on_gpu else 0.0, 0 if on_gpu else 1)
