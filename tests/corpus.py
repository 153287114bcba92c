"""The bad-input corpus: files a forensic scan meets on seized drives and scraped dumps.

Made by code, not shipped as blobs: ``make_corpus(root, face_rgb)`` writes every case and
returns ``{relative path: expected statuses}`` (a set, where the machine decides: a file
without read permission is readable for root).
"""

from __future__ import annotations

import io
import os
import socket
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

OK = {"ok"}
# Special files, each with the message its one row must carry: a scan names them and never opens
# them (reading a FIFO waits for a writer forever; /dev/zero never ends).
SPECIAL_FILES = {
    "pipe.jpg": "not a regular file: named pipe (FIFO)",
    "sock.png": "not a regular file: socket",
    "zero.jpg": "not a regular file: symbolic link to a character device",
    "pipe_link.jpg": "not a regular file: symbolic link to a named pipe (FIFO)",
}


# Hostile metadata on images that decode: the image is scanned as usual (status ok), and what its metadata did
# is said in provenance_detail; the provenance kind each must get.
PROVENANCE_CASES = {
    "c2pa_shaped_garbage.jpg": "c2pa-invalid",  # a JUMBF box labelled c2pa that is not a manifest store
    "c2pa_label_in_pixels.png": "none",  # the bytes "c2pa" in a chunk that is no manifest: the SDK finds none
    "huge_xmp.png": "none",  # a 3 MB XMP packet: not parsed (over the bound)
    "xmp_entity_bomb.jpg": "none",  # billion laughs: entities are refused
    "xmp_not_xml.jpg": "none",
    "malformed_exif.jpg": "none",  # an EXIF block of random bytes
    "exif_offsets_out_of_file.jpg": "none",
    "hostile_exif_text.jpg": "camera-exif",  # a make with a newline, a terminal escape and 5,000 characters
}


def _app11(payload: bytes) -> bytes:
    return b"\xff\xeb" + struct.pack(">H", len(payload) + 2) + payload


def _with_exif(rgb: np.ndarray, exif: bytes | Image.Exif) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", exif=exif, quality=90)
    return buf.getvalue()


def write_provenance_cases(root: Path, face_rgb: np.ndarray) -> None:
    """Files whose metadata is hostile, each an image with a face that decodes (see PROVENANCE_CASES)."""
    from PIL import PngImagePlugin

    rng = np.random.default_rng(25)
    ok, jpg = cv2.imencode(".jpg", face_rgb[..., ::-1])
    jpg = jpg.tobytes()
    # JPEG APP11 segment "JP" + box instance and sequence, then a jumb superbox whose description box says c2pa
    jumd = b"jumd" + b"c2pa" + bytes.fromhex("00110010800000aa00389b71") + b"\x03c2pa\x00"
    box = struct.pack(">I", 16 + len(jumd) + 400) + b"jumb" + struct.pack(">I", 4 + len(jumd)) + jumd + rng.bytes(400)
    (root / "c2pa_shaped_garbage.jpg").write_bytes(jpg[:2] + _app11(b"JP\x02\x11\x00\x00\x00\x01" + box) + jpg[2:])
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "c2pa " * 50)
    Image.fromarray(face_rgb).save(root / "c2pa_label_in_pixels.png", pnginfo=info)
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta xmlns:x='adobe:ns:meta/'>" + "<a b='c'/>" * 300_000 + "</x:xmpmeta>")
    Image.fromarray(face_rgb).save(root / "huge_xmp.png", pnginfo=info)
    bomb = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8)) + ']><x:xmpmeta xmlns:x="adobe:ns:meta/">&i;</x:xmpmeta>')
    buf = io.BytesIO()
    Image.fromarray(face_rgb).save(buf, "JPEG", xmp=bomb.encode(), quality=90)
    (root / "xmp_entity_bomb.jpg").write_bytes(buf.getvalue())
    buf = io.BytesIO()
    Image.fromarray(face_rgb).save(buf, "JPEG", xmp=b"<x:xmpmeta><rdf:RDF unclosed " + rng.bytes(500), quality=90)
    (root / "xmp_not_xml.jpg").write_bytes(buf.getvalue())
    (root / "malformed_exif.jpg").write_bytes(_with_exif(face_rgb, b"Exif\x00\x00" + rng.bytes(300)))
    # a big-endian IFD whose Make points 2 GB past the end of the file, and an Exif sub-IFD pointer into nowhere
    ifd = b"MM\x00\x2a\x00\x00\x00\x08\x00\x02" + b"\x01\x0f\x00\x02\x00\x00\x10\x00\x7f\xff\xff\xff" + b"\x87\x69\x00\x04\x00\x00\x00\x01\xff\xff\xff\x00"
    (root / "exif_offsets_out_of_file.jpg").write_bytes(_with_exif(face_rgb, b"Exif\x00\x00" + ifd + b"\x00" * 8))
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x010F] = "Evil\nCam\x1b[31mRED\x1b[0m" + "A" * 5000
    exif[0x0110] = "=HYPERLINK(\"x\")"
    (root / "hostile_exif_text.jpg").write_bytes(_with_exif(face_rgb, exif))


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A valid PNG that declares width x height but holds almost no data (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _save_with_orientation(img: np.ndarray, path: Path, orientation: int) -> None:
    """Store the pixels so that applying EXIF ``orientation`` shows ``img`` upright."""
    stored = {6: np.rot90(img, 1), 8: np.rot90(img, -1)}[orientation]  # 6: display rotates 90 CW
    im = Image.fromarray(np.ascontiguousarray(stored))
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, exif=exif, quality=92)


def make_corpus(root: Path, face_rgb: np.ndarray) -> dict[str, set[str]]:
    """Write every case under ``root``; ``face_rgb`` is a real photo with one face (the astronaut)."""
    root.mkdir(parents=True, exist_ok=True)
    cases: dict[str, set[str]] = {}

    def put(name: str, expected: set[str]) -> Path:
        cases[name] = expected
        return root / name

    put("zero_bytes.jpg", {"unreadable"}).write_bytes(b"")
    ok, jpg = cv2.imencode(".jpg", face_rgb[..., ::-1])
    put("truncated.jpg", {"unreadable"}).write_bytes(jpg.tobytes()[: len(jpg) // 3])
    ok, png = cv2.imencode(".png", face_rgb[..., ::-1])
    put("truncated.png", {"unreadable"}).write_bytes(png.tobytes()[: len(png) // 3])
    put("text_named.jpg", {"unreadable"}).write_text("this is not a picture\n")
    _save_with_orientation(face_rgb, put("exif_orientation_6.jpg", OK), 6)
    _save_with_orientation(face_rgb, put("exif_orientation_8.jpg", OK), 8)
    Image.fromarray(face_rgb).convert("CMYK").save(put("cmyk.jpg", OK), quality=92)
    grey16 = (cv2.cvtColor(face_rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257)
    cv2.imwrite(str(put("grey_16bit.png", OK)), grey16)
    rgb16 = face_rgb[..., ::-1].astype(np.uint16) * 257
    cv2.imwrite(str(put("rgb_16bit.png", OK)), rgb16)
    Image.fromarray(face_rgb).convert("L").save(put("greyscale.png", OK))
    Image.fromarray(face_rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(put("palette.png", OK))
    h, w = face_rgb.shape[:2]
    rgba = np.zeros((h + 200, w + 200, 4), np.uint8)  # transparent margin around the photo
    rgba[100 : 100 + h, 100 : 100 + w, :3] = face_rgb
    rgba[100 : 100 + h, 100 : 100 + w, 3] = 255
    Image.fromarray(rgba, "RGBA").save(put("rgba_transparent.png", OK))
    frames = [Image.fromarray(face_rgb), Image.fromarray(np.full_like(face_rgb, 30))]
    frames[0].save(put("animated.gif", OK), save_all=True, append_images=frames[1:], duration=100, loop=0)
    _png_header_only(put("declared_20000x20000.png", {"too_large"}), 20000, 20000)
    Image.fromarray(np.full((1, 1, 3), 127, np.uint8)).save(put("one_pixel.png", {"no_face"}))
    Image.fromarray(np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))).convert("RGB").save(put("no_face.jpg", {"no_face"}))

    # 50 small faces: the astronaut's face, 40 px, on a 10 x 5 grid.
    face = cv2.resize(face_rgb[20:250, 130:330], (40, 46), interpolation=cv2.INTER_AREA)
    grid = np.full((5 * 70, 10 * 64, 3), 200, np.uint8)
    for r in range(5):
        for c in range(10):
            grid[r * 70 + 12 : r * 70 + 58, c * 64 + 12 : c * 64 + 52] = face
    Image.fromarray(grid).save(put("fifty_small_faces.png", OK))

    locked = put("no_read_permission.jpg", {"unreadable"} if os.geteuid() != 0 else {"ok"})
    locked.write_bytes(jpg.tobytes())
    os.chmod(locked, 0)

    (root / "loop").mkdir()
    (root / "loop" / "back").symlink_to(root, target_is_directory=True)

    put("unicode_名前_é.jpg", OK).write_bytes(jpg.tobytes())
    bad_name = os.fsencode(root) + b"/latin1_caf\xe9.jpg"
    with open(bad_name, "wb") as fh:
        fh.write(jpg.tobytes())
    cases["latin1_caf\\xe9.jpg"] = OK

    (root / "folder_named.jpg").mkdir()
    put("folder_named.jpg/inside.png", OK).write_bytes(png.tobytes())
    put("=HYPERLINK(1)+@x.png", OK).write_bytes(png.tobytes())

    os.mkfifo(put("pipe.jpg", {"unreadable"}))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(put("sock.png", {"unreadable"})))  # the socket node stays after the socket is closed
    put("zero.jpg", {"unreadable"}).symlink_to("/dev/zero")
    put("pipe_link.jpg", {"unreadable"}).symlink_to("pipe.jpg")
    write_provenance_cases(root, face_rgb)
    cases.update(dict.fromkeys(PROVENANCE_CASES, OK))
    return cases
