"""The stages of a Ray scan: Ray Data actors, each called with one part (one row) at a time.

Rows come from the local scan's own code (faces.faces_in_file, scan.score_chunk, schema.to_frame):
same columns, types, statuses and messages.
"""

from __future__ import annotations

import io
import json
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from muflow_cli.faces.detect import FaceDetector
from muflow_cli.faces.face import FileFaces
from muflow_cli.faces.options import FaceFinding
from muflow_cli.faces.stage import faces_in_file
from muflow_cli.model.card import ModelCard
from muflow_cli.model.deepfake_model import DeepfakeModel
from muflow_cli.pipelines.fit_config import FitConfig, detector_spec
from muflow_cli.pipelines.ray.packing import pack_faces, unpack_faces
from muflow_cli.pipelines.ray.parts import PART_ROW_SCHEMA, encode_part
from muflow_cli.pipelines.ray.storage import ReadFailure, filesystem, read_one
from muflow_cli.pipelines.scan import ScanConfig, score_chunk
from muflow_cli.pipelines.schema import arrow_schema, provenance_counts, summarize, to_frame

# A failed read travels as two columns (None where the file was read, or is left to the local reader).
READ_SCHEMA = (PART_ROW_SCHEMA.append(pa.field("data", pa.list_(pa.large_binary())))
               .append(pa.field("error_status", pa.list_(pa.string())))
               .append(pa.field("error_message", pa.list_(pa.string())))
               .append(pa.field("identities", pa.large_string())))
FACES_SCHEMA = PART_ROW_SCHEMA.append(pa.field("identities", pa.large_string())).append(pa.field("faces", pa.large_binary()))
SCORED_SCHEMA = pa.schema([("part", pa.int64()), ("name", pa.string()), ("counts", pa.string()), ("parquet", pa.large_binary())])
WRITTEN_SCHEMA = pa.schema([("part", pa.int64()), ("name", pa.string()), ("counts", pa.string())])


class ReadParts:
    """Stage 2 (a few actors, no CPU reserved): the bytes of every file of each part, ``threads`` files at
    a time (I/O only; an object store answers each request after a round trip).

    Actors, not tasks: Ray keeps no more idle worker processes than a node has CPUs, and the actors
    that find faces hold those, so a short read task's worker was stopped once idle and a new one
    started (interpreter and imports, ~1.3 s of CPU) for a later read: 14 of them in a 200-photo
    scan on 2 CPUs, a third of its wall time (docs/performance.md, Benchmark 5)."""

    def __init__(self, threads: int = 16) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="muflow-read")

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = []
        for row in batch.to_pylist():
            read = list(self.pool.map(lambda pn: read_one(os.fsdecode(pn[0]), pn[1]), zip(row["paths"], row["shown"])))
            out.append({**row, "data": [data for data, _, _ in read],
                        "error_status": [failure and failure.status for _, failure, _ in read],
                        "error_message": [failure and failure.message for _, failure, _ in read],
                        "identities": json.dumps([ident for _, _, ident in read])})
        return pa.Table.from_pylist(out, schema=READ_SCHEMA)


class FindFaces:
    """Stage 3 (an actor): decode, detect and align each part's files with one single-threaded detector.
    faces.faces_in_file does the work, so statuses and messages are the local scan's."""

    def __init__(self, card: ModelCard, config: ScanConfig) -> None:
        # as scan.iter_scan builds it: the model's detector and crop
        self._setup(card.face_detector.factory(config.faces), config.faces, card.crop.size, card.crop.context, config.provenance_cap)

    def _setup(self, make: Callable[[], FaceDetector] | None, finding: FaceFinding, size: int, context: float,
               provenance: float | None) -> None:
        self.detector = make() if make is not None else None
        self.finding, self.size, self.context, self.provenance = finding, size, context, provenance

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = [{"part": row["part"], "name": row["name"], "paths": row["paths"], "shown": row["shown"], "identities": row["identities"],
                "faces": pack_faces(self.find(row))} for row in batch.to_pylist()]
        return pa.Table.from_pylist(out, schema=FACES_SCHEMA)

    def find(self, row: dict) -> list[FileFaces]:
        """The face-finding results of one part's files, in order."""
        failures = [None if s is None else ReadFailure(s, m) for s, m in zip(row["error_status"], row["error_message"])]
        return [self._one(os.fsdecode(p), n, d, f) for p, n, d, f in zip(row["paths"], row["shown"], row["data"], failures)]

    def _one(self, path: str, shown: str, data: bytes | None, failure: ReadFailure | None) -> FileFaces:
        if failure is not None:
            return FileFaces(shown, failure.status, failure.message)
        source = io.BytesIO(data) if data is not None else Path(path)
        res = faces_in_file(source, self.detector, self.finding, self.size, self.context, provenance=self.provenance)
        res.path, res.image = path, None
        return res


class FindFitFaces(FindFaces):
    """Stage 3 of ``fit --ray`` (pipelines/ray/collect.py): FindFaces with the fit's detector and crop
    (fit_config.detector_spec, ``crop_size``, ``context``) instead of a model's, and no provenance read
    (the local fit reads none)."""

    def __init__(self, config: FitConfig) -> None:
        self._setup(detector_spec(config).factory(config.faces), config.faces, config.crop_size, config.context, None)


def load_scoring_model(model: str | None, backbone_weights: str | None, device: str, engine: str, threads: int) -> DeepfakeModel:
    """The model as a scoring actor holds it, loaded once. ``threads``: the CPU engine's intra-op threads
    (through ``OMP_NUM_THREADS``, which both ONNX Runtime's and torch's pools read), so an actor uses the
    CPUs Ray gave it and no more; a cached graph then loads without importing torch."""
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
    loaded = DeepfakeModel.load(model, backbone_weights=backbone_weights).to(device).use_engine(engine)
    loaded.engine.set_spinning(False)  # other actors share this node's cores (torch's engine: nothing to set)
    return loaded


def score_part(row: dict, results: list[FileFaces], model: DeepfakeModel, config: ScanConfig, settings: str,
               schema: pa.Schema) -> dict:
    """One part's rows (scan.score_chunk: the local scan's), as one Parquet file's bytes with the part's metadata."""
    chunk = score_chunk(row["part"], results, row["shown"], model, config)
    df = to_frame(chunk.rows, model.layer_names)
    counts = {**summarize(df), "provenance": provenance_counts(df)}  # summed over the parts at the end (driver.add_counts)
    parquet = encode_part(df, schema, row["part"], settings, counts, json.loads(row["identities"]))
    return {"part": row["part"], "name": row["name"], "counts": json.dumps(counts), "parquet": parquet}


class ScoreParts:
    """Stage 4 (an actor): the model, loaded once, scores each part's faces into one Parquet file's bytes."""

    def __init__(self, model: str | None, backbone_weights: str | None, device: str, engine: str, config: ScanConfig,
                 settings: str, threads: int) -> None:
        self.model = load_scoring_model(model, backbone_weights, device, engine, threads)
        self.config, self.settings = config, settings
        self.schema = arrow_schema(self.model.layer_names)

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = [score_part(row, unpack_faces(row["faces"]), self.model, self.config, self.settings, self.schema)
               for row in batch.to_pylist()]
        return pa.Table.from_pylist(out, schema=SCORED_SCHEMA)


class ScanParts(FindFaces):
    """Stages 3 and 4 in one actor, for CPU-only clusters: find the faces of a part, then score them with
    the model this actor holds (one single-threaded engine beside one single-threaded detector).

    Both stages need the same resource there, a CPU, and their shares of the work move with the data
    (3.5 faces a photo in a crowd folder, 1 in a folder of dataset crops, none in landscapes): actors
    that do both balance themselves, as the local scan's threads do, where a fixed split of the CPUs
    between two actor pools leaves one pool waiting (Benchmark 5). The crops also stay in the process,
    instead of crossing the object store."""

    def __init__(self, card: ModelCard, model: str | None, backbone_weights: str | None, engine: str, config: ScanConfig,
                 settings: str) -> None:
        super().__init__(card, config)
        self.model = load_scoring_model(model, backbone_weights, "cpu", engine, 1)
        self.config, self.settings = config, settings
        self.schema = arrow_schema(self.model.layer_names)

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = [score_part(row, self.find(row), self.model, self.config, self.settings, self.schema) for row in batch.to_pylist()]
        return pa.Table.from_pylist(out, schema=SCORED_SCHEMA)


class WriteParts:
    """Stage 5 (a few actors, no CPU reserved, for the reason given in ReadParts): each part's file,
    written under a hidden temporary name and renamed into place, so a reader never sees half a part
    and a retried write replaces the same file."""

    def __init__(self, out: str) -> None:
        self.fs, self.root = filesystem(out)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = []
        for row in batch.to_pylist():
            tmp = f"{self.root}/.{row['name']}.{uuid.uuid4().hex[:8]}.tmp"
            with self.fs.open_output_stream(tmp) as fh:
                fh.write(row["parquet"])
            self.fs.move(tmp, f"{self.root}/{row['name']}")
            rows.append({"part": row["part"], "name": row["name"], "counts": row["counts"]})
        return pa.Table.from_pylist(rows, schema=WRITTEN_SCHEMA)
