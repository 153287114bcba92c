"""HTML reports of scans: counts, every face with its thumbnail and heat map, every file without
a scored face with its status, and every image with its face boxes coloured by verdict.

Reports stream. The scan's observer (:class:`ReportVisuals`) writes each chunk's pictures as
JPEG files into a staging folder beside the report as soon as the chunk is scored, keeps one
byte per table row (which pictures exist), and hands the journal only their file names; so
memory does not grow with the scan, and a resumed scan finds the pictures of its finished
chunks on disk. The report is assembled at the end from the table and the staging folder,
one page at a time (:class:`ReportTarget` has the forms and the cut-over).

The pages are Jinja2 templates (pages.py, ``templates/``): every value is HTML-escaped by
default, as file names are attacker-controlled, and every page carries the Content-Security-Policy
of ``base.html.j2``: inline styles and images from the report itself, no script, no network.

The heat map shows, per position of the aligned crop, the flow's residual energy |r(h, w)|^2 / 2
per channel, averaged over the backbone layers (upsampled to the crop): where the face's features,
after the flow, sit far from what the flow learned from real faces. A standard-normal position
scores 0.5 on average; the colour scale runs from 0 (blue) to 1.5 and above (red). It is not a
segmentation of a manipulated region, and it leaves out the two other terms of the score (the
Gaussian of the spatial mean and the flow's log-determinant): see docs/method.md.
"""

from __future__ import annotations

import base64
import math
import os
import shutil
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np
import pandas as pd

from muflow_cli.errors import UsageError
from muflow_cli.inputs.images import encode_image
from muflow_cli.outputs.pages import now, render, stream

THUMB = 112
IMAGE_MAX = 480
HEAT_MAX = 1.5
JPEG_QUALITY = 85
COLOURS = {"fake": (220, 38, 38), "real": (22, 163, 74), "inconclusive": (217, 119, 6)}  # RGB

# One self-contained file while it stays light enough to open and to mail: at most this many
# faces (table rows with pictures) and this many bytes of pictures (+33 % as base64). Past it
# the report is pages, each light to render (docs/performance.md, "Reports").
SINGLE_FILE_FACES = 1000
SINGLE_FILE_BYTES = 20 * 2**20
FACES_PER_PAGE = 200
IMAGES_PER_PAGE = 50
FILES_PER_PAGE = 1000  # text-only rows
MARKER = ".muflow-report"  # in a report folder: muflow may replace this folder
Src = Callable[[str], str | None]  # a picture's name -> its src in the page being written (None: not on disk)


# -- pictures ---------------------------------------------------------------------------------
def heat_overlay(crop: np.ndarray, maps: list[np.ndarray], channels: list[int]) -> np.ndarray:
    """The crop with the per-position residual energy per channel blended over it (RGB uint8).

    A masked model's maps are NaN where the crop lies outside the photo (nn/nll.py): those pixels are not
    evidence, and are drawn grey and hatched, never coloured."""
    size = crop.shape[0]
    layers = [cv2.resize(np.nan_to_num(m / c, nan=0.0), (size, size), interpolation=cv2.INTER_LINEAR) for m, c in zip(maps, channels)]
    outside = np.any([cv2.resize(np.isnan(m).astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0 for m in maps], axis=0)
    level = np.clip(np.mean(layers, axis=0) / HEAT_MAX * 255.0, 0, 255).astype(np.uint8)
    colour = cv2.applyColorMap(level, cv2.COLORMAP_JET)[..., ::-1]
    out = cv2.addWeighted(crop, 0.5, colour, 0.5, 0)
    if outside.any():
        yy, xx = np.mgrid[0:size, 0:size]
        hatch = ((xx + yy) // max(2, size // 32)) % 2 == 0
        grey = (0.3 * crop.mean(axis=2, keepdims=True) + 0.7 * 128).astype(np.uint8)
        out[outside] = np.where(hatch[outside, None], grey[outside] // 2 + 40, grey[outside])
    return out


def thumb(rgb: np.ndarray) -> np.ndarray:
    return cv2.resize(rgb, (THUMB, THUMB), interpolation=cv2.INTER_AREA)


def _marked(image: np.ndarray, boxes: list[tuple[np.ndarray, str]]) -> np.ndarray:
    h, w = image.shape[:2]
    s = min(1.0, IMAGE_MAX / max(h, w))
    small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA) if s < 1 else image.copy()
    for i, (box, verdict) in enumerate(boxes):
        x1, y1, x2, y2 = (int(round(v * s)) for v in box)
        cv2.rectangle(small, (x1, y1), (x2, y2), COLOURS.get(verdict, (128, 128, 128)), 2)
        cv2.putText(small, str(i), (x1 + 2, max(12, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, COLOURS.get(verdict, (128, 128, 128)), 1)
    return small


# -- where a report goes -------------------------------------------------------------------------
def _is_report_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and (path / MARKER).is_file()


class ReportTarget:
    """Where a report goes, and the staging folder its pictures and pages are written to first.

    ``NAME.html`` (or ``.htm``): one self-contained file while the report is small (see
    SINGLE_FILE_FACES); past that, ``NAME.html`` is the index and the pages and pictures live in
    ``NAME_files/`` beside it (the browser's "save complete page" layout). Any other name: always
    a folder ``NAME/`` with ``index.html``. The staging folder ``.NAME.muflow-parts`` sits beside
    the report so that a rename finishes it; it survives a killed run for ``--resume``.
    """

    def __init__(self, path: Path, resume: bool = False) -> None:
        self.path = Path(path)
        self.may_be_single = self.path.suffix.lower() in (".html", ".htm")
        self.folder = self.path.with_name(self.path.stem + "_files") if self.may_be_single else self.path
        if self.may_be_single and self.path.is_dir():
            raise UsageError(f"{self.path} is a folder; give a file name ending in .html, or a folder name without it")
        if (self.folder.exists() or self.folder.is_symlink()) and not _is_report_folder(self.folder):
            raise UsageError(f"{self.folder} exists and is not a muflow report folder; choose another name "
                             "(muflow replaces only its own reports)")
        self.staging = self.path.parent / f".{self.path.name}.muflow-parts"
        if not resume and self.staging.exists():
            shutil.rmtree(self.staging)
        self.images = self.staging / "img"
        self.images.mkdir(parents=True, exist_ok=True)

    def write_picture(self, name: str, rgb: np.ndarray) -> str:
        (self.images / name).write_bytes(encode_image(rgb, "jpeg", JPEG_QUALITY))
        return name

    def has(self, name: str) -> bool:
        return (self.images / name).is_file()

    def picture_bytes(self, names: Iterable[str]) -> int:
        return sum((self.images / n).stat().st_size for n in names)

    def data_uri(self, name: str) -> str:
        return "data:image/jpeg;base64," + base64.b64encode((self.images / name).read_bytes()).decode("ascii")

    def finish_single(self, write: Callable[[IO[str]], None]) -> Path:
        """Write the one-file report through ``write`` to a temporary name, rename it into place, drop the staging folder."""
        from muflow_cli.inputs.atomic import atomic_write

        def run(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as fh:
                write(fh)

        atomic_write(self.path, run)
        shutil.rmtree(self.staging, ignore_errors=True)
        return self.path

    def page_writer(self) -> Callable[[str, Callable[[IO[str]], None]], None]:
        """``put(name, write)``: write one page of a folder report into the staging folder."""

        def put(name: str, write: Callable[[IO[str]], None]) -> None:
            with open(self.staging / name, "w", encoding="utf-8") as fh:
                write(fh)

        return put

    def finish_folder(self, write_index: Callable[[IO[str], str], None]) -> Path:
        """Rename the staging folder (pages written) into place, replacing an earlier muflow report;
        for a ``.html`` name also write that file as the index, linking into the folder."""
        from muflow_cli.inputs.atomic import atomic_write

        with open(self.staging / "index.html", "w", encoding="utf-8") as fh:
            write_index(fh, "")
        (self.staging / MARKER).write_text("written by muflow; muflow may replace this folder\n")
        old = None
        if self.folder.exists():
            old = self.folder.with_name(f".{self.folder.name}.muflow-old-{os.getpid()}")
            os.replace(self.folder, old)
        os.replace(self.staging, self.folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        if not self.may_be_single:
            return self.folder / "index.html"

        def run(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as fh:
                write_index(fh, urllib.parse.quote(self.folder.name) + "/")

        atomic_write(self.path, run)
        return self.path


# -- pages ------------------------------------------------------------------------------------
@dataclass
class Section:
    """One list of a report (faces, files, images): its items, how many a page holds, how each is drawn."""

    slug: str
    title: str
    items: Sequence[Any]
    per_page: int
    template: str  # draws ``rows``: an iterator of what ``row`` returns
    row: Callable[[Any, Src], Any]  # (item, picture name -> src) -> what the template draws for it; None: nothing

    def pages(self) -> int:
        return (len(self.items) + self.per_page - 1) // self.per_page

    def page_name(self, k: int) -> str:
        return f"{self.slug}-{k + 1:03d}.html"

    def span(self, k: int) -> tuple[int, int]:
        """The first and last item of page ``k``, counted from 1."""
        return k * self.per_page + 1, min(len(self.items), (k + 1) * self.per_page)

    def rows(self, src: Src, items: Sequence[Any] | None = None) -> Iterator[Any]:
        """What the template draws, one item at a time (so a page is written without being held whole)."""
        for item in self.items if items is None else items:
            row = self.row(item, src)
            if row is not None:
                yield row


def write_report(target: ReportTarget, template: str, title: str, counts: dict[str, int], notes: Sequence[str],
                 sections: list[Section], pictures: Callable[[], Iterator[str]], rows: int,
                 provenance: dict[str, int] | None = None) -> tuple[Path, str | None]:
    """Assemble a report from its sections through ``template`` (one extending ``report.html.j2``):
    one file (data URIs) when ``target`` allows it and the report is small (``rows`` and the bytes of
    ``pictures()``), else index + pages. ``provenance``: files per provenance kind, a line of its own under
    the counts (None: not read). Returns the path written and a note for the user when a ``.html`` name
    became pages."""
    sections = [s for s in sections if len(s.items)]
    single = target.may_be_single and rows <= SINGLE_FILE_FACES and target.picture_bytes(pictures()) <= SINGLE_FILE_BYTES
    common = dict(title=title, when=now(), counts=counts, notes=notes, provenance=provenance)
    if single:

        def whole(fh: IO[str]) -> None:
            src = lambda name: target.data_uri(name) if target.has(name) else None  # noqa: E731
            stream(fh, template, mode="single", parts=[(s, s.rows(src)) for s in sections], **common)

        return target.finish_single(whole), None

    put = target.page_writer()
    src = lambda name: "img/" + urllib.parse.quote(name) if target.has(name) else None  # noqa: E731
    for s in sections:
        n = s.pages()
        for k in range(n):

            def write_page(fh: IO[str], s: Section = s, k: int = k, n: int = n) -> None:
                items = s.items[k * s.per_page : (k + 1) * s.per_page]
                stream(fh, template, mode="page", title=f"{title}: {s.title} {k + 1}/{n}", section=s, k=k, rows=s.rows(src, items))

            put(s.page_name(k), write_page)

    def index(fh: IO[str], base: str) -> None:
        stream(fh, template, mode="index", sections=sections, base=base, **common)

    path = target.finish_folder(index)
    note = None
    if target.may_be_single:
        note = (f"the report is too large for one file ({rows} faces; one file holds up to {SINGLE_FILE_FACES} and "
                f"{SINGLE_FILE_BYTES >> 20} MiB of pictures): {target.path} is its index, its pages are in {target.folder}/")
    return path, note


# -- the scan report ----------------------------------------------------------------------------
KINDS = ("thumb", "heat", "image")
BITS = {k: 1 << i for i, k in enumerate(KINDS)}


def picture_name(chunk: int, row: int, kind: str) -> str:
    """A picture's file name: from the chunk and the row within it, so a resumed scan finds it again."""
    return f"c{chunk:06d}-{row:04d}-{kind}.jpg"


def chunk_pictures(chunk, channels: list[int], target: ReportTarget) -> list[dict[str, str]]:
    """Write a scored chunk's pictures (thumbnail and heat map per face, marked-up image per file);
    per row, the names written."""
    rows, crops, maps = chunk.rows, chunk.crops, chunk.maps
    out: list[dict[str, str]] = [{} for _ in rows]
    ptr = face = 0

    def put(row: int, kind: str, rgb: np.ndarray) -> None:
        out[row][kind] = target.write_picture(picture_name(chunk.index, row, kind), rgb)

    for res in chunk.files:
        n = len(res.faces) if res.status == "ok" else 1
        if res.status == "ok":
            boxes = []
            for k, f in enumerate(res.faces):
                crop = crops[face]
                put(ptr + k, "thumb", thumb(crop))
                put(ptr + k, "heat", thumb(heat_overlay(crop, [m[face] for m in maps], channels)))
                boxes.append((f.box, rows[ptr + k].get("verdict", "")))
                face += 1
            put(ptr, "image", _marked(res.image, boxes))
        elif res.image is not None:
            put(ptr, "image", _marked(res.image, []))
        ptr += n
    return out


class ReportVisuals:
    """A scan observer that writes each chunk's pictures to the report's staging folder as the chunk
    finishes. It keeps one byte per row (which pictures exist) and returns the names to the journal,
    so a resumed scan knows which pictures of its finished chunks are on disk."""

    def __init__(self, channels: list[int], target: ReportTarget) -> None:
        self.channels = channels
        self.target = target
        self.chunks: list[tuple[int, bytes]] = []  # (chunk index, a flags byte per row)

    def __call__(self, chunk) -> list[dict[str, str]] | None:
        if chunk.files is None:  # from the journal: trust only pictures that are on disk under the expected name
            kept = chunk.extras if isinstance(chunk.extras, list) and len(chunk.extras) == len(chunk.rows) else [{}] * len(chunk.rows)
            names = [{k: n for k, n in (d.items() if isinstance(d, dict) else ())
                      if k in BITS and n == picture_name(chunk.index, r, k) and self.target.has(n)} for r, d in enumerate(kept)]
        else:
            names = chunk_pictures(chunk, self.channels, self.target)
        self.chunks.append((chunk.index, bytes(sum(BITS[k] for k in d) for d in names)))
        return names if chunk.files is not None else None

    def layout(self, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per table row: chunk index, row within the chunk, picture flags (all 0 if the rows do not match)."""
        chunk = np.concatenate([np.full(len(f), c, np.int64) for c, f in self.chunks]) if self.chunks else np.zeros(0, np.int64)
        within = np.concatenate([np.arange(len(f)) for _, f in self.chunks]) if self.chunks else np.zeros(0, np.int64)
        flags = np.frombuffer(b"".join(f for _, f in self.chunks), np.uint8)
        if len(flags) != rows:
            return np.zeros(rows, np.int64), np.zeros(rows, np.int64), np.zeros(rows, np.uint8)
        return chunk, within, flags


def provenance_cells(row: pd.Series) -> dict[str, str]:
    """A table row's provenance as a report shows it: the kind (``not read`` when it was not) and the detail."""
    from muflow_cli.pipelines.schema import NOT_READ

    kind, detail = row.get("provenance"), row.get("provenance_detail")
    return {"provenance": NOT_READ if pd.isna(kind) else str(kind), "provenance_detail": "" if pd.isna(detail) else str(detail)}


def write_html(df: pd.DataFrame, visuals: ReportVisuals | None, target: ReportTarget, title: str, notes: list[str]) -> tuple[Path, str | None]:
    """Write the report of a scan table (its pictures written by ``visuals`` during the scan); see
    :func:`write_report`. Pages are written one at a time: only the table is in memory. Every face, file
    and image carries its file's provenance (kind and detail), beside the verdict."""
    from muflow_cli.pipelines.schema import provenance_counts, summarize

    chunk, within, flags = visuals.layout(len(df)) if visuals is not None else (np.zeros(len(df), np.int64),) * 2 + (np.zeros(len(df), np.uint8),)
    ok = (df["status"] == "ok").to_numpy()
    fake = ok & (df["verdict"] == "fake").fillna(False).to_numpy(bool)
    p = df["p_value"].astype(float).to_numpy()
    flagged = np.flatnonzero(fake)[np.argsort(p[fake], kind="stable")]
    rest = np.flatnonzero(ok & ~fake)[np.argsort(p[ok & ~fake], kind="stable")]
    files = np.flatnonzero(~ok)
    images = np.flatnonzero(flags & BITS["image"])

    def name(i: int, kind: str) -> str | None:
        return picture_name(int(chunk[i]), int(within[i]), kind) if flags[i] & BITS[kind] else None

    def pic(src: Src, i: int, kind: str) -> str | None:
        n = name(i, kind)
        return src(n) if n is not None else None

    def face_row(i: int, src: Src) -> dict:
        r = df.iloc[int(i)]
        scored = not pd.isna(r["score"])  # a masked model leaves a face with too little inside the photo unscored
        return {"verdict": str(r["verdict"]) if scored else "not scored", "thumb": pic(src, i, "thumb"), "heat": pic(src, i, "heat"),
                "file": str(r["file"]), "face": int(r["face"]), "box": ", ".join(f"{r[c]:.0f}" for c in ("x1", "y1", "x2", "y2")),
                "score": float(r["score"]) if scored else float("nan"), "p_value": float(r["p_value"]) if scored else float("nan"),
                **provenance_cells(r)}

    def file_row(i: int, src: Src) -> dict:
        r = df.iloc[int(i)]
        return {"file": str(r["file"]), "status": str(r["status"]), "message": str(r["message"]), **provenance_cells(r)}

    def image_row(i: int, src: Src) -> dict | None:
        s = pic(src, i, "image")
        r = df.iloc[int(i)]
        return None if s is None else {"src": s, "file": str(r["file"]), **provenance_cells(r)}

    sections = [
        Section("flagged", "Flagged faces", flagged, FACES_PER_PAGE, "scan_faces.html.j2", face_row),
        Section("files", "Files without a scored face", files, FILES_PER_PAGE, "scan_files.html.j2", file_row),
        Section("faces", "Other faces" if len(flagged) else "Faces", rest, FACES_PER_PAGE, "scan_faces.html.j2", face_row),
        Section("images", "Images", images, IMAGES_PER_PAGE, "scan_images.html.j2", image_row),
    ]

    def pictures() -> Iterator[str]:
        for i in np.flatnonzero(flags):
            for k in KINDS:
                n = name(int(i), k)
                if n is not None:
                    yield n

    read = "provenance" in df and df["provenance"].notna().any()
    return write_report(target, "scan.html.j2", title, summarize(df), notes, sections, pictures, int(ok.sum()),
                        provenance_counts(df) if read else None)


# -- the eval index -----------------------------------------------------------------------------
EVAL_COLUMNS = (("perturbation", "perturbation", "s"), ("fake_source", "fakes", "s"), ("n_real", "n real", "d"), ("n_fake", "n fake", "d"),
                ("auc", "AUC", ".3f"), ("ap", "AP", ".3f"), ("eer", "EER", ".3f"), ("tpr_at_fpr_1", "TPR@1%", ".3f"),
                ("tpr_at_fpr_5", "TPR@5%", ".3f"), ("tpr_at_threshold", "TPR@thr", ".3f"), ("fpr_at_threshold", "FPR@thr", ".3f"),
                ("accuracy_at_threshold", "acc@thr", ".3f"), ("fakes_side", "fakes score", "s"))


def _cell(m: dict, key: str, spec: str) -> str:
    v = m.get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    text = format(v, spec) if spec != "s" else str(v)
    ci = m.get("ci95", {}).get(key)
    return text + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def write_eval_index(folder: Path, metrics: list[dict], files: list[Path], notes: list[str], provenance: list[dict] | None = None) -> Path:
    """``index.html`` in an eval output folder: the metrics as a table, links to every output, the plots inline;
    with ``provenance`` (evaluate.provenance_by_source), the files per provenance kind of each source."""
    from muflow_cli.inputs.atomic import atomic_write

    folder = Path(folder)
    text = render("eval.html.j2", title="muflow eval", when=now(), notes=notes, headers=[h for _, h, _ in EVAL_COLUMNS],
                  rows=[[_cell(m, k, spec) for k, _, spec in EVAL_COLUMNS] for m in metrics],
                  provenance=[{"label": p["label"], "source": p["source"], "kinds": ", ".join(f"{k} {n}" for k, n in p["files"].items())}
                              for p in provenance or []],
                  files=[{"name": p.name, "stem": p.stem, "href": urllib.parse.quote(p.name), "plot": p.suffix == ".png"} for p in files])
    atomic_write(folder / "index.html", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return folder / "index.html"
