"""Reading images from disk the way a forensic user needs: never crash, say what went wrong.

Any file becomes either an RGB uint8 array (EXIF orientation applied; grey, palette, RGBA,
CMYK and 16-bit inputs converted) or an :class:`ImageReadError` with a status and a message.
:func:`read_image_file` also reads what the file says about itself (inputs/provenance.py) from
the same bytes, so each file is read from disk once.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from muflow_cli.errors import MuflowError
from muflow_cli.inputs.compression import Compression, compression_of
from muflow_cli.inputs.files import walk_files
from muflow_cli.inputs.provenance import Provenance, read_provenance

IMAGE_SUFFIXES = {
    ".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp",
    ".gif", ".ppm", ".pgm", ".pbm", ".pnm", ".jp2", ".avif", ".heic",
}
# Decoded size above which a file is refused rather than risking memory (a decompression bomb).
MAX_PIXELS = 120_000_000
# With provenance, a file up to this size is read into memory once, then decoded and read for provenance from
# those bytes; a larger one is decoded from disk and its provenance read from its path (head and tail).
HOLD_BYTES = 64 * 2**20


class InputError(MuflowError):
    """A file that cannot be turned into pixels; ``status`` is the table's status value."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ImageReadError(InputError):
    """An image that cannot be decoded; ``provenance``: what the file says about itself, when it was read."""

    provenance: Provenance | None = None


_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "named pipe (FIFO)"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISDIR, "directory"),
)


def special_file(path: Path | str, st: os.stat_result | None = None) -> str | None:
    """None for a regular file (or a symbolic link to one); else what it is, e.g. "named pipe (FIFO)" or
    "symbolic link to a character device".

    Why: reading a FIFO blocks until someone writes to it (a scan that never ends), a device like
    /dev/zero never ends or has side effects. Only ``stat`` is called (links followed): nothing is opened.
    Raises OSError as ``os.stat`` does (FileNotFoundError for a missing file or a broken link).
    """
    st = st if st is not None else os.stat(path)
    if stat.S_ISREG(st.st_mode):
        return None
    kind = next((name for is_kind, name in _SPECIAL_KINDS if is_kind(st.st_mode)), "special file")
    return f"symbolic link to a {kind}" if os.path.islink(path) else kind


def refusal_message(path: Path | str, exc: OSError) -> str:
    """The table message for a file that cannot even be looked at or opened."""
    if isinstance(exc, FileNotFoundError):
        return "broken symbolic link" if os.path.islink(path) else "file not found"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.strerror or exc}"
    return f"cannot open: {exc.strerror or exc}"


def read_image(path: Path | BinaryIO, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode ``path`` to an (H, W, 3) uint8 RGB array, or raise :class:`ImageReadError`.

    Only regular files are opened: a FIFO, socket, device or directory (or a link to one) is refused
    by name. The file is opened non-blocking and checked again, so one swapped in after the check
    cannot hang the read either. ``path`` may also be an in-memory file (``io.BytesIO``: bytes a Ray
    reader fetched from object storage), decoded by the same rules, so its row says what a local
    scan would."""
    return read_image_record(path, max_pixels).pixels


def read_image_file(path: Path | BinaryIO, max_pixels: int = MAX_PIXELS,
                    provenance: float | None = None) -> tuple[np.ndarray, Provenance | None]:
    """(pixels, provenance) of one file: :func:`read_image_record` without the compression."""
    record = read_image_record(path, max_pixels, provenance)
    return record.pixels, record.provenance


@dataclass
class DecodedImage:
    """A file's pixels and what its bytes say: provenance (None: not read) and compression (its header)."""

    pixels: np.ndarray
    provenance: Provenance | None
    compression: Compression


def read_image_record(path: Path | BinaryIO, max_pixels: int = MAX_PIXELS, provenance: float | None = None) -> DecodedImage:
    """:func:`read_image`'s pixels, the file's compression (inputs/compression.py) and, when ``provenance``
    (a time cap in seconds) is given, what the file says about itself (provenance.read_provenance), read from
    the bytes the decoder reads, so the file is read once. A file that cannot be decoded raises ImageReadError
    as read_image does, with its provenance attached when its bytes were read (a C2PA manifest or a label
    says something even of an image Pillow cannot decode)."""
    if isinstance(path, io.BytesIO):
        if provenance is None:
            rgb, comp = _decode(path, path.getbuffer().nbytes, max_pixels)
            return DecodedImage(rgb, None, comp)
        return _decode_held(path.getvalue(), max_pixels, provenance)  # getvalue() shares the bytes it was made from
    try:
        kind = special_file(path)
        if kind is None:
            flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
            fd = os.open(path, flags)
    except OSError as exc:
        raise ImageReadError("unreadable", refusal_message(path, exc)) from None
    if kind is not None:
        raise ImageReadError("unreadable", f"not a regular file: {kind}")
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        kind = special_file(path, st)
        if kind is not None:
            raise ImageReadError("unreadable", f"not a regular file: {kind}")
        if provenance is None:
            rgb, comp = _decode(fh, st.st_size, max_pixels)
            return DecodedImage(rgb, None, comp)
        if st.st_size <= HOLD_BYTES:
            data = fh.read()
        else:
            try:
                rgb, comp = _decode(fh, st.st_size, max_pixels)
            except ImageReadError as exc:
                exc.provenance = read_provenance(path, provenance)
                raise
            return DecodedImage(rgb, read_provenance(path, provenance), comp)
    return _decode_held(data, max_pixels, provenance)


def _decode_held(data: bytes, max_pixels: int, time_cap: float) -> DecodedImage:
    """Pixels, provenance and compression of a file's bytes held in memory."""
    try:
        rgb, comp = _decode(io.BytesIO(data), len(data), max_pixels)
    except ImageReadError as exc:
        exc.provenance = read_provenance(data, time_cap)
        raise
    return DecodedImage(rgb, read_provenance(data, time_cap), comp)


def _decode(fh, size: int, max_pixels: int) -> tuple[np.ndarray, Compression]:
    """(pixels, compression) of an open file, or ImageReadError."""
    try:
        start = fh.tell()
        head = fh.read(256)  # a WebP's first chunks (lossy or lossless); the header Pillow reads anyway
        fh.seek(start)
        with Image.open(fh) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise ImageReadError("too_large", f"{w}x{h} pixels is above the limit of {max_pixels:,}")
            comp = compression_of(im, head)
            im = ImageOps.exif_transpose(im)  # first frame of animations
            return _to_rgb8(im), comp
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        msg = "empty file" if size == 0 else "not an image format muflow can read"
        raise ImageReadError("unreadable", msg) from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError("too_large", f"refused before decoding: {exc}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageReadError("unreadable", f"corrupt or truncated image: {exc}") from None


def _to_rgb8(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if a.max() > 255 else 255.0
        a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Composite transparency over mid-grey: neither black nor white biases the detector.
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        im = Image.alpha_composite(bg, rgba)
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def encode_image(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 85) -> bytes:
    """An (H, W, 3) uint8 RGB array as the bytes of a JPEG (at ``quality``) or PNG file (OpenCV's
    encoder, PNG at its default compression): the one encoder of report pictures and saved crops."""
    import cv2  # here, not at import: reading images needs only Pillow

    ext, params = {"jpeg": (".jpg", [cv2.IMWRITE_JPEG_QUALITY, quality]), "png": (".png", [])}[fmt]
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise ValueError(f"{fmt.upper()} encoding failed")
    return buf.tobytes()


def iter_image_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Image files under ``paths`` (files.walk_files with the image suffixes)."""
    return walk_files(paths, IMAGE_SUFFIXES)
