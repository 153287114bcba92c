"""Reading images from disk the way a forensic user needs: never crash, say what went wrong.

Any file becomes either an RGB uint8 array (EXIF orientation applied; grey, palette, RGBA,
CMYK and 16-bit inputs converted) or an :class:`ImageReadError` with a status and a message.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import MuflowError
from .files import walk_files

IMAGE_SUFFIXES = {
    ".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp",
    ".gif", ".ppm", ".pgm", ".pbm", ".pnm", ".jp2", ".avif", ".heic",
}
# Decoded size above which a file is refused rather than risking memory (a decompression bomb).
MAX_PIXELS = 120_000_000


class InputError(MuflowError):
    """A file that cannot be turned into pixels; ``status`` is the table's status value."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ImageReadError(InputError):
    """An image that cannot be decoded."""


def read_image(path: Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode ``path`` to an (H, W, 3) uint8 RGB array, or raise :class:`ImageReadError`."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise ImageReadError("too_large", f"{w}x{h} pixels is above the limit of {max_pixels:,}")
            im = ImageOps.exif_transpose(im)  # first frame of animations
            return _to_rgb8(im)
    except ImageReadError:
        raise
    except PermissionError as exc:
        raise ImageReadError("unreadable", f"permission denied: {exc.strerror or exc}") from None
    except IsADirectoryError:
        raise ImageReadError("unreadable", "is a directory") from None
    except FileNotFoundError:
        raise ImageReadError("unreadable", "file not found") from None
    except UnidentifiedImageError:
        size = path.stat().st_size if path.exists() else 0
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


def iter_image_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Image files under ``paths`` (files.walk_files with the image suffixes)."""
    return walk_files(paths, IMAGE_SUFFIXES)
