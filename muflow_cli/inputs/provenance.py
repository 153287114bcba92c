"""What a file says about itself: C2PA Content Credentials, IPTC/XMP labels, generator settings, camera EXIF.

An analyst weighs two kinds of evidence: what the pixels say (the detector) and what the file says about
where it came from. muflow reports the second *beside* the first and never mixes them: metadata is easy
to strip (any re-save, screenshot or upload may drop it) and easy to forge (anyone can write an EXIF make
or an XMP label; a C2PA signature only says who signed, not that the content is true). So a file's
provenance never changes a face's score, p-value or verdict.

One entry point, :func:`read_provenance`, gives one :class:`Provenance` per file: a ``kind`` (one of
:data:`KINDS`) and a short ``detail`` (one line, printable characters only, at most
:data:`DETAIL_MAX` characters; never a generator's prompt). When several kinds of evidence are in one
file, the kind is the first of: C2PA (invalid, then generated, edited, captured), an IPTC/XMP
DigitalSourceType label, generator settings, camera EXIF; the detail names the rest.

Libraries do the parsing, one module a format, each filling one file's evidence
(inputs/provenance_evidence.py): c2pa-python (the C2PA SDK's official bindings) reads and validates manifests,
offline (no remote manifest and no OCSP responder is ever fetched; inputs/c2pa_manifest.py); Pillow reads
EXIF, PNG text chunks and the XMP packet (inputs/image_metadata.py; what diffusion front-ends write there:
inputs/generator_settings.py); defusedxml parses the XMP packet (no entities, no DTD), bounded to
:data:`XMP_MAX_BYTES` (inputs/xmp_labels.py). This module reads the file and decides the kind.
A reading never raises and gives up at its time cap: what failed is said in the detail, and the image is
scanned as usual.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from muflow_cli.inputs.c2pa_manifest import describe_manifest_store, read_c2pa
from muflow_cli.inputs.image_metadata import read_image_metadata
from muflow_cli.inputs.provenance_evidence import FIELD_MAX, Evidence, clean
from muflow_cli.inputs.xmp_labels import XMP_MAX_BYTES, read_xmp, xmp_packet

__all__ = ["DETAIL_MAX", "FIELD_MAX", "KINDS", "READ_MAX_BYTES", "TIME_CAP_S", "WINDOW_BYTES", "XMP_MAX_BYTES", "Provenance",
           "clean", "describe_manifest_store", "read_provenance"]

# The kinds, strongest evidence first (the order of precedence).
KINDS = ("c2pa-invalid", "c2pa-generated", "c2pa-edited", "c2pa-captured", "label-generated", "generator-metadata",
         "camera-exif", "none")
TIME_CAP_S = 2.0  # per file: a hostile file's reading is given up after this (the scan goes on)
DETAIL_MAX = 300  # characters of the detail column
READ_MAX_BYTES = 64 << 20  # a larger file named by path: C2PA from the file, metadata from its head and tail
WINDOW_BYTES = 8 << 20  # ... of this many bytes each


@dataclass(frozen=True)
class Provenance:
    """One file's provenance: ``kind`` (one of :data:`KINDS`) and a one-line ``detail`` of what was seen."""

    kind: str
    detail: str


def _decide(ev: Evidence) -> Provenance:
    """The kind of the strongest evidence found; the detail says it, then the rest, then the notes."""
    found = [e for e in (ev.c2pa, ev.label and ("label-generated", ev.label),
                         ev.generator and ("generator-metadata", ev.generator), ev.camera and ("camera-exif", ev.camera)) if e]
    kind = found[0][0] if found else "none"
    texts = [text for _, text in found] + ev.notes
    return Provenance(kind, clean(" | ".join(texts), DETAIL_MAX))


# -- one file -------------------------------------------------------------------------------------------
def _evidence_of_bytes(data: bytes, ev: Evidence) -> None:
    if b"c2pa" in data and ev.in_time():  # every embedded manifest store is a JUMBF box labelled c2pa: no marker, no SDK call
        read_c2pa(data, ev)
    if ev.in_time() and not read_image_metadata(data, ev) and b"<x:xmpmeta" in data and ev.in_time():
        read_xmp(xmp_packet(data) or b"", ev)


def _evidence_of_path(path: str | os.PathLike, ev: Evidence) -> None:
    """A file named by path (a video, a file too big to hold): opened non-blocking and checked to be a regular
    file, so a FIFO or a device never hangs the reading; read whole up to :data:`READ_MAX_BYTES`."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        ev.notes.append(f"not read ({clean(exc.strerror or exc, 60)})")
        return
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):  # checked on the descriptor, before a file object is made of it: Python's
        os.close(fd)  # open() refuses a directory's descriptor and leaves it open
        ev.notes.append("not read (not a regular file)")
        return
    with os.fdopen(fd, "rb") as fh:
        if st.st_size <= READ_MAX_BYTES:
            _evidence_of_bytes(fh.read(), ev)
            return
        # the SDK reads the container's structure, not the whole file; given up, it may still be reading fh
        if not (ev.in_time() and read_c2pa(fh, ev) and ev.in_time()):
            return
        fh.seek(0)
        head = fh.read(WINDOW_BYTES)
        fh.seek(st.st_size - WINDOW_BYTES)
        tail = fh.read(WINDOW_BYTES)
    if ev.in_time() and not read_image_metadata(head, ev):
        packet = xmp_packet(head) or xmp_packet(tail)
        if packet:
            read_xmp(packet, ev)
    ev.notes.append(f"file of {st.st_size:,} bytes: metadata looked for in its first and last {WINDOW_BYTES >> 20} MiB")


def read_provenance(source: bytes | bytearray | memoryview | str | Path, time_cap: float = TIME_CAP_S) -> Provenance:
    """The provenance of one file, from its bytes (as the scan already read them) or its path (videos).

    Never raises, and gives up after ``time_cap`` seconds (the detail says so): a scan of a million files
    must not wait on one. The C2PA SDK (native code, the one parser a hostile file could keep busy) runs on
    a daemon thread joined for the time left; the rest (Pillow's header and EXIF reader, the XMP packet of
    at most XMP_MAX_BYTES) is bounded by the sizes it reads and runs in the caller's thread, the time cap
    checked before each step: a thread per file cost a scan 6 % (docs/performance.md, Benchmark 6)."""
    if isinstance(source, (bytearray, memoryview)):
        source = bytes(source)
    ev = Evidence(cap=time_cap, deadline=time.monotonic() + time_cap)
    try:
        if isinstance(source, bytes):
            _evidence_of_bytes(source, ev)
        else:
            _evidence_of_path(source, ev)
    except Exception as exc:  # whatever a hostile file does to a parser, the scan goes on
        ev.notes.append(f"provenance: reading failed ({type(exc).__name__}: {clean(exc, 80)})")
    return _decide(ev)
