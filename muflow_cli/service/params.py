"""The HTTP query parameters of /v1/scan and /v1/video, made from the library's config dataclasses.

A parameter's name, type and default are a field's (ScanConfig, VideoConfig, FaceFinding), its choices the
names of muflow_cli/choices.py: nothing is restated here, so a new option of the library shows up in the
API as it does in the CLI, and the CLI and the API cannot drift apart. The config's own ``check()`` judges
the values (a ConfigError becomes a 400).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Any, Literal, Optional

from fastapi import Query

from muflow_cli import choices
from muflow_cli.faces.options import FaceFinding
from muflow_cli.pipelines.scan import ScanConfig
from muflow_cli.pipelines.video_scan import VideoConfig

# Fields whose values are names from choices.py.
CHOICES: dict[str, tuple[str, ...]] = {"tail": choices.TAILS, "detector": choices.FACE_DETECTORS, "aligned": choices.ALIGNED_CONVENTIONS}
# The fields a caller may set. Left out: what the server decides (batch size, chunking, threads) and what
# names a path on the server (video's save_faces).
SCAN_FIELDS = ("fpr", "fdr", "tail", "provenance")  # fdr: Benjamini-Hochberg over one request's faces
VIDEO_FIELDS = ("fps", "frames", "fpr", "fdr", "tail", "max_gap", "provenance")
FACE_FIELDS = tuple(f.name for f in dataclasses.fields(FaceFinding))


def _parameters(cls: type, names: tuple[str, ...]) -> list[inspect.Parameter]:
    hints = typing.get_type_hints(cls)
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    out = []
    for name in names:
        annotation = hints[name]
        if name in CHOICES:
            annotation = Optional[Literal[CHOICES[name]]]
        doc = f"{cls.__name__}.{name}" + (f": one of {', '.join(CHOICES[name])}" if name in CHOICES else "")
        out.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                     default=Query(defaults[name], description=doc)))
    return out


def query_dependency(cls: type, names: tuple[str, ...], extra: dict[str, tuple[Any, Any]] | None = None) -> Callable[..., Any]:
    """A FastAPI dependency that takes ``names`` of ``cls`` and every FaceFinding field as query parameters
    (plus ``extra``: name -> (annotation, Query)) and returns ``(cls(...faces=FaceFinding(...)), extras)``."""
    extra = extra or {}
    params = _parameters(cls, names) + _parameters(FaceFinding, FACE_FIELDS)
    params += [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, annotation=a, default=q) for k, (a, q) in extra.items()]

    def build(**values: Any) -> tuple[Any, dict[str, Any]]:
        faces = FaceFinding(**{k: values.pop(k) for k in FACE_FIELDS})
        config = cls(**{k: values.pop(k) for k in names}, faces=faces)
        return config, values

    build.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return build


PICTURES = {
    "heatmap": (bool, Query(False, description="per face, a PNG heat map (the report's) as base64")),
    "crops": (bool, Query(False, description="per face, the aligned crop as a base64 PNG")),
    "name": (Optional[str], Query(None, max_length=1000, description="the file's name in the table, for a raw (non-multipart) body")),
}
scan_query = query_dependency(ScanConfig, SCAN_FIELDS, PICTURES)
video_query = query_dependency(VideoConfig, VIDEO_FIELDS, {"name": PICTURES["name"]})
