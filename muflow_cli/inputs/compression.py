"""How an image file was compressed, read from its header: the format, and for a JPEG its quality.

Conformal p-values are valid for faces like the calibration faces. A real photo re-saved at JPEG 75
scores unlike a camera original — to a one-class model, lost detail is unusual — so muflow calibrates
per kind of processing (stats/strata.py) and needs to know, for each scanned file, what was done to it.
What a file shows of that costs nothing to read: the quantization tables of a JPEG are in its header
(Pillow parses them when it opens the file), a PNG is lossless, a WebP says lossy or lossless in its
first chunk. The pixels are never looked at.

The JPEG quality is estimated the way libjpeg makes tables: quality Q scales the standard tables of
the JPEG specification (Annex K) by 50/Q (Q < 50) or 2 - Q/50 (Q >= 50). The luminance table's sum
against the standard one's gives the scale, hence Q. Encoders that do not use the standard tables
(some cameras, Photoshop) get the IJG quality that compresses as hard — what matters here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The JPEG specification's example luminance quantization table (Annex K.1); libjpeg scales it by quality.
_STANDARD_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
], dtype=np.float64)

LOSSLESS_FORMATS = frozenset({"PNG", "BMP", "TIFF", "PPM", "DIB", "GIF", "TGA"})
SUBSAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}


@dataclass(frozen=True)
class Compression:
    """What a file's header says of its compression. ``quality`` is the JPEG quality (1-100, estimated
    from the tables); None for a lossless file, and for a lossy one whose quality cannot be read
    (``lossy`` tells which)."""

    format: str  # Pillow's name: JPEG, PNG, WEBP, ...; "video" for decoded video frames
    lossy: bool
    quality: float | None = None
    subsampling: str | None = None  # JPEG chroma subsampling (4:4:4, 4:2:2, 4:2:0)

    @property
    def label(self) -> str:
        """One short word for tables: jpeg 75, png, webp lossy, ..."""
        name = self.format.lower()
        if self.quality is not None:
            return f"{name} {self.quality:.0f}"
        return f"{name} lossy" if self.lossy and self.format not in ("JPEG", "video") else name


VIDEO = Compression("video", lossy=True)  # a decoded frame: a codec compressed it, its quality is not in a header
UNKNOWN = Compression("unknown", lossy=True)  # bytes muflow did not read itself (an in-memory array)


def jpeg_quality(luma_table) -> float:
    """The IJG quality whose scaled standard luminance table sums like ``luma_table`` (64 values, any order)."""
    q = np.asarray(list(luma_table), dtype=np.float64)
    if q.size != 64:
        raise ValueError(f"a JPEG quantization table has 64 entries, not {q.size}")
    scale = 100.0 * q.sum() / _STANDARD_LUMA.sum()  # libjpeg: table = (std * scale + 50) // 100, clamped to 1..255
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return float(np.clip(round(quality), 1, 100))


def compression_of(im, head: bytes = b"") -> Compression:
    """The compression of an opened Pillow image (before any conversion); ``head``: the file's first bytes,
    for the WebP chunk that says lossy or lossless."""
    fmt = (im.format or "unknown").upper()
    if fmt in ("JPEG", "MPO"):
        tables = getattr(im, "quantization", None) or {}
        quality = jpeg_quality(tables[min(tables)]) if tables else None
        sampling = None
        try:
            from PIL import JpegImagePlugin

            sampling = SUBSAMPLING.get(JpegImagePlugin.get_sampling(im))
        except Exception:  # an unusual component layout: the quality is what counts
            sampling = None
        return Compression("JPEG", True, quality, sampling)
    if fmt == "WEBP":
        return Compression("WEBP", not _webp_lossless(head))
    if fmt in LOSSLESS_FORMATS:
        return Compression(fmt, False)
    return Compression(fmt, True)  # JPEG 2000, AVIF, HEIF...: lossy as far as muflow can tell


def _webp_lossless(head: bytes) -> bool:
    """A WebP's image chunk: VP8L is lossless, VP8 lossy; an extended file (VP8X) lists ICC/animation/alpha
    chunks first, so the first image chunk is looked for within ``head``."""
    if len(head) < 16 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return False
    at = 12
    while at + 8 <= len(head):
        tag, size = head[at:at + 4], int.from_bytes(head[at + 4:at + 8], "little")
        if tag in (b"VP8L", b"VP8 "):
            return tag == b"VP8L"
        at += 8 + size + (size & 1)
    return False
