"""The scan and video tables' schema: documented, stable columns, the same for every output and every engine.

Pipelines build their rows into these frames; outputs/tables.py writes them.
"""

from __future__ import annotations

import pandas as pd

from muflow_cli.faces.face import Face, FileFaces
from muflow_cli.inputs.provenance import KINDS as PROVENANCE_KINDS

# What the file says about itself (inputs/provenance.py): evidence beside the verdict, never part of it.
PROVENANCE_SCHEMA: dict[str, tuple[str, str]] = {
    "provenance": ("string", " | ".join(PROVENANCE_KINDS) + "; empty when not read (--no-provenance)"),
    "provenance_detail": ("string", "what was seen: C2PA state, signer, generator and actions; labels; generator settings "
                                    "(never the prompt); camera EXIF; failures (one line, at most 300 characters)"),
}
NOT_READ = "not read"  # how a report and a summary show a file whose provenance was not read

# name -> (pandas dtype, meaning). The order is the column order of every output.
SCHEMA: dict[str, tuple[str, str]] = {
    "file": ("string", "path of the image as given or found"),
    "face": ("Int64", "face index in the file, 0 = highest detection score; empty for file-level rows"),
    "status": ("string", "ok | no_face | unreadable | too_large | error"),
    "message": ("string", "human-readable detail (errors, small-face warnings)"),
    "image_width": ("Int64", "decoded width in pixels (after EXIF orientation)"),
    "image_height": ("Int64", "decoded height in pixels"),
    **PROVENANCE_SCHEMA,
    "compression": ("string", "what the file's header says of its compression: jpeg 75 (quality estimated from its "
                              "tables), png, webp lossy, ...; empty when not read"),
    "x1": ("Float64", "face box left, original pixels"),
    "y1": ("Float64", "face box top"),
    "x2": ("Float64", "face box right"),
    "y2": ("Float64", "face box bottom"),
    "det_score": ("Float64", "face detector confidence"),
    "landmarks": ("string", "5 landmarks 'x y' separated by ';' (eyes, nose, mouth corners), original pixels"),
    "face_px": ("Float64", "face size in the original image: sqrt(box width x box height)"),
    "upscale": ("Float64", "aligned-crop pixels per original pixel (> 1: the face was enlarged)"),
    "inside": ("Float64", "share of the face's aligned crop that lies inside the image (< 1: the crop reaches past its edge, "
                          "as for headshots; a masked model scores only that part, and none below 0.2)"),
    "score": ("Float64", "fakeness score: negative log-likelihood, nats per dimension, mean over layers"),
    "p_value": ("Float64", "conformal p-value against the model's held-out real faces processed like this face"),
    "stratum": ("string", "the calibration stratum the p-value comes from (compression/enlargement, stats/strata.py); "
                          "pooled for a model without strata"),
    "verdict": ("string", "fake if p_value <= fpr (with --fdr: if the Benjamini-Hochberg rule rejects it), real, or "
                          "inconclusive (the reason in message); empty for file-level rows"),
}
SMALL_FACE_PX = 64.0

_FACE_COLUMNS = ("x1", "y1", "x2", "y2", "det_score", "face_px")
VIDEO_FRAME_SCHEMA: dict[str, tuple[str, str]] = {
    "video": ("string", "path of the video"),
    "frame": ("Int64", "frame number in the stream, from 0"),
    "time_s": ("Float64", "timestamp in seconds (container time); empty when the file has no timing"),
    "track": ("Int64", "face track id within the video"),
    "face": ("Int64", "face index within the frame"),
    "status": ("string", "ok | no_face | no_frames | unreadable | error"),
    "message": ("string", "detail for non-ok rows, or a note about the stream's timing"),
    **PROVENANCE_SCHEMA,
    **{k: SCHEMA[k] for k in _FACE_COLUMNS},
    "score": SCHEMA["score"],
    "p_value": SCHEMA["p_value"],
    "stratum": SCHEMA["stratum"],
    "verdict": SCHEMA["verdict"],
}
TRACK_SCHEMA: dict[str, tuple[str, str]] = {
    "video": ("string", "path of the video"),
    "track": ("Int64", "face track id within the video"),
    "status": ("string", "ok, or the video's status when it has no track"),
    "message": ("string", "detail"),
    **PROVENANCE_SCHEMA,
    "first_s": ("Float64", "time of the track's first face"),
    "last_s": ("Float64", "time of the track's last face"),
    "first_frame": ("Int64", "frame number of the first face"),
    "last_frame": ("Int64", "frame number of the last face"),
    "faces": ("Int64", "number of faces (sampled frames) in the track"),
    "mean_score": ("Float64", "mean of the faces' scores"),
    "max_score": ("Float64", "highest face score"),
    "p_value": ("Float64", "track p-value: min(1, 2 x median of the faces' p-values), valid under any dependence"),
    "verdict": ("string", "fake if p_value <= fpr, else real"),
}


def unscored_message(face: Face) -> str:
    """Why a face has no score: too little of its crop is inside the photo for a masked model."""
    from muflow_cli.nn.config import MIN_INSIDE

    return f"only {face.inside:.0%} of the face's crop is inside the image (at least {MIN_INSIDE:.0%} is needed): not scored"


def face_columns(face: Face) -> dict[str, float]:
    """A face's box, detector score and size: the columns every face table shares."""
    x1, y1, x2, y2 = (float(v) for v in face.box)
    return {"x1": x1, "y1": y1, "x2": x2, "y2": y2, "det_score": face.det_score, "face_px": face.size_px}


def provenance_columns(res: FileFaces) -> dict[str, str | None]:
    """A file's provenance columns (empty when it was not read), on each of its rows."""
    p = res.provenance
    return {"provenance": p.kind if p else None, "provenance_detail": p.detail if p else None,
            "compression": res.compression.label if res.compression else None}


def layer_columns(layer_names: list[str]) -> list[str]:
    """Per-layer score columns, e.g. score_s4 (stride-4 layer), appended after the schema."""
    return [f"score_{name}" for name in layer_names]


def to_frame(rows: list[dict], layer_names: list[str], schema: dict[str, tuple[str, str]] = SCHEMA) -> pd.DataFrame:
    """Rows -> a table with the schema's columns and dtypes, then per-layer score columns."""
    cols = list(schema) + layer_columns(layer_names)
    df = pd.DataFrame(rows, columns=cols)
    for name, (dtype, _) in schema.items():
        df[name] = df[name].astype(dtype)
    for name in layer_columns(layer_names):
        df[name] = df[name].astype("Float64")
    return df


def summarize(df: pd.DataFrame) -> dict[str, int]:
    """Counts of a scan table for summaries and reports: files, faces, flagged, no-face files, errors."""
    return {
        "files": int(df["file"].nunique()),
        "faces": int((df["status"] == "ok").sum()),
        "flagged": int((df["verdict"] == "fake").sum()),
        "inconclusive": int((df["verdict"] == "inconclusive").sum()),
        "no_face": int((df["status"] == "no_face").sum()),
        "errors": int((~df["status"].isin(["ok", "no_face"])).sum()),
    }


def provenance_counts(df: pd.DataFrame, file_column: str = "file") -> dict[str, int]:
    """Files per provenance kind (each file once, however many face rows it has), in the order of
    provenance.KINDS, kinds with no file left out; files whose provenance was not read as ``not read``."""
    files = df.drop_duplicates(file_column)
    kinds = files["provenance"].astype("string").fillna(NOT_READ) if "provenance" in files else pd.Series(NOT_READ, index=files.index)
    counts = kinds.value_counts()
    return {k: int(counts[k]) for k in (*PROVENANCE_KINDS, NOT_READ) if k in counts}


_ARROW_TYPES = {"string": "string", "Int64": "int64", "Float64": "float64"}


def arrow_schema(layer_names: list[str], schema: dict[str, tuple[str, str]] = SCHEMA):
    """The table's columns as a pyarrow schema: a Parquet part with no rows, or with a column that is all
    empty (no face in any of its files), keeps the same types as every other part."""
    import pyarrow as pa

    fields = [pa.field(name, getattr(pa, _ARROW_TYPES[dtype])()) for name, (dtype, _) in schema.items()]
    return pa.schema(fields + [pa.field(name, pa.float64()) for name in layer_columns(layer_names)])
