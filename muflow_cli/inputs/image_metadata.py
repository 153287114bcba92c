"""What Pillow reads of an image's headers (no pixel is decoded): the camera's EXIF (make, model, software,
time), generator settings in text chunks, comments and EXIF fields, and the XMP packet."""

from __future__ import annotations

import io
import warnings
from typing import Any

from muflow_cli.inputs.generator_settings import GENERATOR_KEYS, SETTINGS_WORDS, generator_text, names_generator
from muflow_cli.inputs.provenance_evidence import Evidence, clean
from muflow_cli.inputs.xmp_labels import read_xmp, xmp_packet

TEXT_KEYS = set(GENERATOR_KEYS) | {"comment", "software"}  # the text entries of Pillow's info looked at

# EXIF tags (Pillow's getexif): the camera, the software, the time.
MAKE, MODEL, SOFTWARE, DATE_TIME, IMAGE_DESCRIPTION = 0x010F, 0x0110, 0x0131, 0x0132, 0x010E
EXIF_IFD, DATE_TIME_ORIGINAL, USER_COMMENT = 0x8769, 0x9003, 0x9286

# Pillow warns on stderr about a file's broken EXIF/TIFF tags ("Corrupt EXIF data", "Tag data larger than file")
# while reading them, for the image decoder (EXIF orientation) and for this module alike: a per-file problem,
# which muflow says in that file's row (the detail, below) instead of as noise beside a quiet scan.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ""


def _user_comment(value: Any) -> str:
    """EXIF UserComment: an 8-byte character code, then the text (A1111 writes its settings here in JPEG/WebP)."""
    if not isinstance(value, bytes):
        return _text(value)
    code, body = value[:8], value[8:]
    if code.startswith(b"UNICODE"):  # UTF-16 of either byte order, as writers differ
        texts = [body.decode(order, "replace") for order in ("utf-16-be", "utf-16-le")]
        return next((t for t in texts if SETTINGS_WORDS.search(t)), texts[0])
    return body.decode("utf-8", "replace") if code.startswith((b"ASCII", b"\x00")) else value.decode("utf-8", "replace")


def read_image_metadata(data: bytes, ev: Evidence) -> bool:
    """EXIF, text chunks, comments and the XMP packet through Pillow (headers only: no pixel is decoded);
    False when Pillow does not know the format."""
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return False
    except Exception as exc:  # a decompression bomb, a broken header: the image's row says what; the detail says why
        ev.notes.append(f"metadata: not read ({type(exc).__name__})")
        return True
    with im:
        info = dict(im.info)
        xmp = info.get("xmp") or info.get("XML:com.adobe.xmp")
        if xmp:
            read_xmp(xmp, ev)
        elif b"<x:xmpmeta" in data:
            read_xmp(xmp_packet(data) or b"", ev)
        texts = {k.lower(): _text(v) for k, v in info.items()
                 if isinstance(k, str) and k.lower() in TEXT_KEYS and isinstance(v, (str, bytes))}
        found = generator_text(texts, f"{im.format or 'image'} text")
        comment = texts.get("comment", "")
        if not found and SETTINGS_WORDS.search(comment):
            found = generator_text({"parameters": comment}, f"{im.format or 'image'} comment")
        software = texts.get("software", "")
        exif, sub = {}, {}
        # A PNG's getexif() decodes the whole image to look for an eXIf chunk after the pixels: only one before them is read.
        if im.format != "PNG" or "exif" in info:
            try:
                exif = im.getexif()
                sub = exif.get_ifd(EXIF_IFD) if EXIF_IFD in exif else {}
            except Exception as exc:  # malformed EXIF: Pillow's reader gives up on it
                ev.notes.append(f"exif: unreadable ({clean(exc, 60)})")
    raw = info.get("exif")
    if isinstance(raw, bytes) and len(raw) > 16 and not len(exif):
        ev.notes.append(f"exif: {len(raw):,} bytes, no tag readable")
    make, model = _text(exif.get(MAKE, "")).strip(" \x00"), _text(exif.get(MODEL, "")).strip(" \x00")
    comfy = {k: v for k, v in (("prompt", make), ("workflow", model)) if v.lower().startswith(k + ":")}
    if comfy and not found:  # ComfyUI's WebP writer puts its graphs in Make and Model
        found = generator_text({k: v.split(":", 1)[1] for k, v in comfy.items()}, "EXIF")
    if comfy:
        make, model = ("" if "prompt" in comfy else make), ("" if "workflow" in comfy else model)
    comment = _user_comment(sub.get(USER_COMMENT, b"")) if sub else ""
    if not found and SETTINGS_WORDS.search(comment):
        found = generator_text({"parameters": comment}, "EXIF UserComment")
    description = _text(exif.get(IMAGE_DESCRIPTION, ""))
    if not found and SETTINGS_WORDS.search(description):
        found = generator_text({"parameters": description}, "EXIF ImageDescription")
    software = _text(exif.get(SOFTWARE, "")).strip(" \x00") or software
    if not found and software and names_generator(software):
        found = f"Software {clean(software)}"
    if found:
        ev.generator = found
    taken = _text(sub.get(DATE_TIME_ORIGINAL, "") if sub else "").strip(" \x00") or _text(exif.get(DATE_TIME, "")).strip(" \x00")
    extra = ([f"software {clean(software)}"] if software and not (found and software in found) else []) + ([f"taken {clean(taken, 24)}"] if taken else [])
    if make or model:
        same = make and model.lower().startswith(make.lower())  # "Canon" + "Canon EOS 5D": the model says both
        camera = " ".join(x for x in (None if same else clean(make, 40), clean(model, 40)) if x)
        ev.camera = "exif " + "; ".join([camera] + extra)
    elif extra:
        ev.notes.append("exif " + "; ".join(extra))
    return True
