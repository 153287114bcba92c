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

Libraries do the parsing: c2pa-python (the C2PA SDK's official bindings) reads and validates manifests,
offline (no remote manifest and no OCSP responder is ever fetched); Pillow reads EXIF, PNG text chunks and
the XMP packet; defusedxml parses the XMP packet (no entities, no DTD), bounded to :data:`XMP_MAX_BYTES`.
A reading never raises and gives up at its time cap: what failed is said in the detail, and the image is
scanned as usual.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

# The kinds, strongest evidence first (the order of precedence).
KINDS = ("c2pa-invalid", "c2pa-generated", "c2pa-edited", "c2pa-captured", "label-generated", "generator-metadata",
         "camera-exif", "none")
TIME_CAP_S = 2.0  # per file: a hostile file's reading is given up after this (the scan goes on)
DETAIL_MAX = 300  # characters of the detail column
FIELD_MAX = 60  # characters of one name (signer, tool, model) within it
XMP_MAX_BYTES = 1 << 20  # a larger XMP packet is not parsed (said in the detail)
READ_MAX_BYTES = 64 << 20  # a larger file named by path: C2PA from the file, metadata from its head and tail
WINDOW_BYTES = 8 << 20  # ... of this many bytes each
MAX_INGREDIENT_DEPTH = 8  # parent manifests followed for a generated origin

# IPTC digital source types (http://cv.iptc.org/newscodes/digitalsourcetype/NAME), by what they claim.
GENERATED_SOURCES = {"trainedAlgorithmicMedia", "algorithmicMedia"}
COMPOSITE_SOURCES = {"compositeWithTrainedAlgorithmicMedia", "compositeSynthetic", "composite", "compositeCapture"}
AI_COMPOSITE_SOURCES = {"compositeWithTrainedAlgorithmicMedia", "compositeSynthetic"}
CREATED_ACTIONS = {"c2pa.created"}
UNTRUSTED = "signingCredential.untrusted"
# c2pa-python errors (their messages start with the type) that mean "a manifest store is there but broken".
BROKEN_MANIFEST = ("Verify", "Manifest", "Decoding", "Signature", "Assertion", "AssertionNotFound", "Json", "Encoding")

NS_IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
NS_XMP = "http://ns.adobe.com/xap/1.0/"
NS_DCTERMS = "http://purl.org/dc/terms/"
NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XMP_FIELDS = {f"{{{NS_IPTC_EXT}}}DigitalSourceType": "source", f"{{{NS_XMP}}}CreatorTool": "tool",
              f"{{{NS_DCTERMS}}}provenance": "remote"}

# Text chunks that diffusion front-ends write (PNG tEXt/zTXt/iTXt keys, lower case) and who writes them.
GENERATOR_KEYS = {
    "parameters": "AUTOMATIC1111-style",  # AUTOMATIC1111, Forge, SD.Next, Fooocus (a1111 scheme)
    "fooocus_scheme": "Fooocus",
    "prompt": "ComfyUI",
    "workflow": "ComfyUI",
    "invokeai_metadata": "InvokeAI",
    "invokeai_graph": "InvokeAI",
    "sd-metadata": "InvokeAI",
    "dream": "InvokeAI",
}
# Names of generators in a Software or CreatorTool field (lower case, matched as words).
GENERATOR_NAMES = ("stable diffusion", "novelai", "midjourney", "dall-e", "dall·e", "firefly", "comfyui", "automatic1111",
                   "invokeai", "fooocus", "imagen", "leonardo.ai", "sdxl", "diffusers", "gemini", "chatgpt", "flux.1")
TEXT_KEYS = set(GENERATOR_KEYS) | {"comment", "software"}  # the text entries of Pillow's info looked at
SETTINGS_WORDS = re.compile(r"\b(Steps|Sampler|CFG scale|Seed|Model hash): ")
MODEL_IN_PARAMETERS = re.compile(r"\bModel: ([^,\n]{1,200})")

# EXIF tags (Pillow's getexif): the camera, the software, the time.
MAKE, MODEL, SOFTWARE, DATE_TIME, IMAGE_DESCRIPTION = 0x010F, 0x0110, 0x0131, 0x0132, 0x010E
EXIF_IFD, DATE_TIME_ORIGINAL, USER_COMMENT = 0x8769, 0x9003, 0x9286

# Pillow warns on stderr about a file's broken EXIF/TIFF tags ("Corrupt EXIF data", "Tag data larger than file")
# while reading them, for the image decoder (EXIF orientation) and for this module alike: a per-file problem,
# which muflow says in that file's row (the detail, below) instead of as noise beside a quiet scan.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")


@dataclass(frozen=True)
class Provenance:
    """One file's provenance: ``kind`` (one of :data:`KINDS`) and a one-line ``detail`` of what was seen."""

    kind: str
    detail: str


@dataclass
class _Evidence:
    """What one file gave, by kind of evidence; ``notes`` are failures and facts that decide no kind."""

    c2pa: tuple[str, str] | None = None  # (kind, text)
    label: str | None = None  # an IPTC/XMP DigitalSourceType that claims generation
    generator: str | None = None
    camera: str | None = None
    notes: list[str] = field(default_factory=list)
    cap: float = TIME_CAP_S
    deadline: float = float("inf")  # time.monotonic() by which the reading gives up

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def in_time(self) -> bool:
        """True while the time cap allows another step; once it does not, says so (once)."""
        if time.monotonic() < self.deadline:
            return True
        late = f"provenance: not read within the time cap of {self.cap:g} s"
        if late not in self.notes:
            self.notes.append(late)
        return False

    def decide(self) -> Provenance:
        found = [e for e in (self.c2pa, self.label and ("label-generated", self.label),
                             self.generator and ("generator-metadata", self.generator), self.camera and ("camera-exif", self.camera)) if e]
        kind = found[0][0] if found else "none"
        texts = [text for _, text in found] + self.notes
        return Provenance(kind, clean(" | ".join(texts), DETAIL_MAX))


def clean(text: Any, limit: int = FIELD_MAX) -> str:
    """``text`` on one line of printable characters (others as \\xNN / \\uNNNN escapes), cut to ``limit``
    characters with an ellipsis: file metadata is attacker-controlled, and a table cell is no place for a
    newline, a terminal escape or a kilobyte of prompt."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = " ".join(str(text).split())
    text = "".join(c if c.isprintable() else (f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}") for c in text[: limit * 2])
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _source_name(uri: str) -> str:
    """The IPTC digital source type's name from its URI (``…/digitalsourcetype/trainedAlgorithmicMedia``)."""
    return clean(str(uri).rstrip("/").rsplit("/", 1)[-1], FIELD_MAX)


# -- C2PA -----------------------------------------------------------------------------------------
_CONTEXT: Any = None
_CONTEXT_LOCK = threading.Lock()


def _c2pa_context() -> Any:
    """One c2pa Context per process, offline: the SDK's defaults fetch a remote manifest named in the file
    (and muflow must never call out to an address a file chose)."""
    global _CONTEXT
    with _CONTEXT_LOCK:
        if _CONTEXT is None:
            import c2pa

            _CONTEXT = c2pa.Context.from_dict({"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}})
        return _CONTEXT


def _actions(manifest: dict) -> list[dict]:
    out = []
    for assertion in manifest.get("assertions") or []:
        if isinstance(assertion, dict) and str(assertion.get("label", "")).startswith("c2pa.actions"):
            data = assertion.get("data") or {}
            out += [a for a in (data.get("actions") or []) if isinstance(a, dict)]
    return out


def _parent_sources(store: dict, manifest: dict, depth: int = 0, seen: set | None = None) -> set[str]:
    """Digital source types claimed by the manifests of the parent ingredients (what this one was made
    from), followed down to :data:`MAX_INGREDIENT_DEPTH`: an edit of a generated image is still generated."""
    seen = seen if seen is not None else set()
    found: set[str] = set()
    if depth >= MAX_INGREDIENT_DEPTH:
        return found
    for ing in manifest.get("ingredients") or []:
        label = ing.get("active_manifest") if isinstance(ing, dict) else None
        if ing.get("relationship") != "parentOf" or not label or label in seen:
            continue
        seen.add(label)
        parent = (store.get("manifests") or {}).get(label)
        if isinstance(parent, dict):
            found |= {_source_name(a["digitalSourceType"]) for a in _actions(parent) if a.get("digitalSourceType")}
            found |= _parent_sources(store, parent, depth + 1, seen)
    return found


def describe_manifest_store(store: dict) -> tuple[str, str]:
    """(kind, text) of a C2PA manifest store as c2pa-python's ``Reader.json()`` gives it: the validation
    state (invalid; valid from a trusted or an untrusted signer), the signer, the claim generator, and the
    actions of the active manifest with their digital source types."""
    state = store.get("validation_state")
    codes = [s.get("code", "") for s in store.get("validation_status") or [] if isinstance(s, dict)]
    failures = [c for c in codes if c != UNTRUSTED]
    active = (store.get("manifests") or {}).get(store.get("active_manifest")) or {}
    actions = _actions(active)
    sources = {_source_name(a["digitalSourceType"]) for a in actions if a.get("digitalSourceType")}
    parents = _parent_sources(store, active)
    names = [str(a.get("action", "?")) for a in actions]
    has_parent = any(isinstance(i, dict) and i.get("relationship") == "parentOf" for i in active.get("ingredients") or [])
    if state == "Invalid" or (state is None and failures):
        kind = "c2pa-invalid"
    elif (sources | parents) & GENERATED_SOURCES:
        kind = "c2pa-generated"
    elif sources & COMPOSITE_SOURCES or any(n not in CREATED_ACTIONS for n in names) or has_parent:
        kind = "c2pa-edited"
    else:
        kind = "c2pa-captured"
    if kind == "c2pa-invalid":
        head = "c2pa invalid (" + clean(", ".join(failures) or "no validation state", 120) + ")"
    elif state == "Trusted":
        head = "c2pa valid, trusted signer"
    elif UNTRUSTED in codes or state == "Valid":
        head = "c2pa valid, untrusted signer"
    else:
        head = f"c2pa {clean(state or 'not validated', 20)}"
    sig = active.get("signature_info") or {}
    parts = [head]
    if sig.get("common_name") or sig.get("issuer"):
        parts.append("signer " + clean(sig.get("common_name") or "?") + (f" ({clean(sig['issuer'])})" if sig.get("issuer") else ""))
    info = active.get("claim_generator_info")
    generator = (info[0] if isinstance(info, list) and info and isinstance(info[0], dict) else {})
    gen = " ".join(str(generator.get(k)) for k in ("name", "version") if generator.get(k)) or active.get("claim_generator")
    if gen:
        parts.append("generator " + clean(gen))
    if actions:
        shown = [str(a.get("action", "?")) + (f" ({_source_name(a['digitalSourceType'])})" if a.get("digitalSourceType") else "")
                 for a in actions[:4]]
        parts.append("actions " + clean(", ".join(shown) + (f" +{len(actions) - 4}" if len(actions) > 4 else ""), 160))
    if parents:
        parts.append("parent " + clean(", ".join(sorted(parents))))
    return kind, "; ".join(parts)


def _read_c2pa(source: bytes | BinaryIO, ev: _Evidence) -> bool:
    """Read the manifest store with the SDK into ``ev``; False when the SDK was given up at the time cap (and
    may still be reading ``source``)."""
    try:
        import c2pa
    except ImportError:
        ev.notes.append("c2pa: not read (c2pa-python is not installed)")
        return True
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            with c2pa.Reader(stream, context=_c2pa_context()) as reader:
                box["store"] = json.loads(reader.json())
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    # The SDK is native code that a hostile manifest could keep busy: it runs on a daemon thread, given up at the
    # time cap (it finishes, or not, on its own, and never keeps the process from exiting).
    worker = threading.Thread(target=run, name="muflow-c2pa", daemon=True)
    worker.start()
    worker.join(ev.remaining())
    if worker.is_alive() or ev.remaining() <= 0:  # finished past the cap (a loaded machine): given up all the same
        ev.notes.append(f"c2pa: not read within the time cap of {ev.cap:g} s")
        return False
    exc = box.get("error")
    if exc is None:
        ev.c2pa = describe_manifest_store(box["store"])
    elif isinstance(exc, c2pa.C2paError):
        message = str(exc)
        what = message.split(":", 1)[0].strip()
        if what in ("ManifestNotFound", "NotSupported"):
            pass
        elif what == "Remote":
            url = message.rsplit(" ", 1)[-1]
            ev.notes.append(f"c2pa: remote manifest at {clean(url)} not fetched (muflow reads offline)")
        elif what in BROKEN_MANIFEST:
            ev.c2pa = ("c2pa-invalid", f"c2pa invalid (manifest store unreadable: {clean(message, 100)})")
        else:
            ev.notes.append(f"c2pa: not read ({clean(message, 100)})")
    else:
        ev.notes.append(f"c2pa: not read ({type(exc).__name__}: {clean(exc, 100)})")
    return True


# -- XMP --------------------------------------------------------------------------------------------
def _xmp_packet(data: bytes) -> bytes | None:
    """The XMP packet found in raw bytes (formats Pillow cannot open, or no packet where Pillow looked)."""
    start = data.find(b"<x:xmpmeta")
    if start < 0:
        return None
    end = data.find(b"</x:xmpmeta>", start)
    return data[start : end + len(b"</x:xmpmeta>")] if end >= 0 else data[start:]


def _read_xmp(packet: bytes | str, ev: _Evidence) -> None:
    if isinstance(packet, str):
        packet = packet.encode("utf-8", "replace")
    if len(packet) > XMP_MAX_BYTES:
        ev.notes.append(f"xmp: packet of {len(packet):,} bytes not parsed (over {XMP_MAX_BYTES >> 20} MiB)")
        return
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    try:
        root = fromstring(packet.strip(b"\x00 \r\n\t"), forbid_dtd=True)
    except DefusedXmlException as exc:
        ev.notes.append(f"xmp: refused ({type(exc).__name__})")
        return
    except Exception as exc:  # a malformed packet (expat's ParseError, a recursion limit): said, not raised
        ev.notes.append(f"xmp: unreadable ({clean(exc, 80)})")
        return
    values: dict[str, list[str]] = {}
    resource, li = f"{{{NS_RDF}}}resource", f"{{{NS_RDF}}}li"
    for el in root.iter():
        for attr, name in XMP_FIELDS.items():
            if el.get(attr):
                values.setdefault(name, []).append(el.get(attr))
        name = XMP_FIELDS.get(el.tag) if isinstance(el.tag, str) else None
        if name:
            text = el.get(resource) or (el.text or "").strip() or next(((x.text or "").strip() for x in el.iter(li) if (x.text or "").strip()), "")
            if text:
                values.setdefault(name, []).append(text)
    sources = list(dict.fromkeys(_source_name(v) for v in values.get("source", [])))
    tool = clean(values["tool"][0]) if values.get("tool") else None
    ai = [s for s in sources if s in GENERATED_SOURCES | AI_COMPOSITE_SOURCES]
    if ai:
        ev.label = "xmp DigitalSourceType " + clean(", ".join(ai)) + (f"; CreatorTool {tool}" if tool else "")
    elif sources:
        ev.notes.append("xmp DigitalSourceType " + clean(", ".join(sources)))
    if tool and _names_generator(tool):
        ev.generator = ev.generator or f"xmp CreatorTool {tool}"
    elif tool and not ai:
        ev.notes.append(f"xmp CreatorTool {tool}")
    remote = [v for v in values.get("remote", []) if v.lower().startswith(("http://", "https://"))]  # not self#jumbf=…
    if remote:
        ev.notes.append(f"xmp: remote C2PA manifest at {clean(remote[0])} not fetched")


def _names_generator(text: str) -> bool:
    low = text.lower()
    return any(re.search(r"(?<![a-z])" + re.escape(name) + r"(?![a-z])", low) for name in GENERATOR_NAMES)


# -- generator settings and EXIF ------------------------------------------------------------------------
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


def _comfy_model(prompt: str) -> str | None:
    """The checkpoint a ComfyUI prompt (a JSON graph) loads, if it names one."""
    if len(prompt) > XMP_MAX_BYTES * 4:
        return None
    try:
        graph = json.loads(prompt)
    except ValueError:
        return None
    nodes = graph.values() if isinstance(graph, dict) else []
    for node in nodes:
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if isinstance(inputs, dict) and isinstance(inputs.get("ckpt_name"), str):
            return inputs["ckpt_name"]
    return None


def _generator_text(texts: dict[str, str], where: str) -> str | None:
    """What the settings chunks say, without the prompt: the tool, the model, how long the settings are."""
    keys = [k for k in texts if k in GENERATOR_KEYS]
    if not keys:
        return None
    params = texts.get("parameters", "")
    if "parameters" in keys and not SETTINGS_WORDS.search(params):
        keys.remove("parameters")  # a 'parameters' chunk that is not diffusion settings
        if not keys:
            return None
    tools = list(dict.fromkeys(GENERATOR_KEYS[k] for k in keys))
    if "Fooocus" in tools:
        tools = ["Fooocus"]
    model = None
    if "parameters" in keys:
        found = MODEL_IN_PARAMETERS.search(params)
        model = found.group(1).strip() if found else None
    elif "prompt" in keys:
        model = _comfy_model(texts["prompt"])
    size = sum(len(texts[k]) for k in keys)
    quoted = ", ".join(f"'{clean(k, 24)}'" for k in keys[:4])
    return (f"{where} {quoted} ({'/'.join(tools)} settings, {size:,} characters, not shown)"
            + (f"; model {clean(model)}" if model else ""))


def _read_image_metadata(data: bytes, ev: _Evidence) -> bool:
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
            _read_xmp(xmp, ev)
        elif b"<x:xmpmeta" in data:
            _read_xmp(_xmp_packet(data) or b"", ev)
        texts = {k.lower(): _text(v) for k, v in info.items()
                 if isinstance(k, str) and k.lower() in TEXT_KEYS and isinstance(v, (str, bytes))}
        found = _generator_text(texts, f"{im.format or 'image'} text")
        comment = texts.get("comment", "")
        if not found and SETTINGS_WORDS.search(comment):
            found = _generator_text({"parameters": comment}, f"{im.format or 'image'} comment")
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
        found = _generator_text({k: v.split(":", 1)[1] for k, v in comfy.items()}, "EXIF")
    if comfy:
        make, model = ("" if "prompt" in comfy else make), ("" if "workflow" in comfy else model)
    comment = _user_comment(sub.get(USER_COMMENT, b"")) if sub else ""
    if not found and SETTINGS_WORDS.search(comment):
        found = _generator_text({"parameters": comment}, "EXIF UserComment")
    description = _text(exif.get(IMAGE_DESCRIPTION, ""))
    if not found and SETTINGS_WORDS.search(description):
        found = _generator_text({"parameters": description}, "EXIF ImageDescription")
    software = _text(exif.get(SOFTWARE, "")).strip(" \x00") or software
    if not found and software and _names_generator(software):
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


# -- one file -------------------------------------------------------------------------------------------
def _evidence_of_bytes(data: bytes, ev: _Evidence) -> None:
    if b"c2pa" in data and ev.in_time():  # every embedded manifest store is a JUMBF box labelled c2pa: no marker, no SDK call
        _read_c2pa(data, ev)
    if ev.in_time() and not _read_image_metadata(data, ev) and b"<x:xmpmeta" in data and ev.in_time():
        _read_xmp(_xmp_packet(data) or b"", ev)


def _evidence_of_path(path: str | os.PathLike, ev: _Evidence) -> None:
    """A file named by path (a video, a file too big to hold): opened non-blocking and checked to be a regular
    file, so a FIFO or a device never hangs the reading; read whole up to :data:`READ_MAX_BYTES`."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        ev.notes.append(f"not read ({clean(exc.strerror or exc, 60)})")
        return
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            ev.notes.append("not read (not a regular file)")
            return
        if st.st_size <= READ_MAX_BYTES:
            _evidence_of_bytes(fh.read(), ev)
            return
        # the SDK reads the container's structure, not the whole file; given up, it may still be reading fh
        if not (ev.in_time() and _read_c2pa(fh, ev) and ev.in_time()):
            return
        fh.seek(0)
        head = fh.read(WINDOW_BYTES)
        fh.seek(st.st_size - WINDOW_BYTES)
        tail = fh.read(WINDOW_BYTES)
    if ev.in_time() and not _read_image_metadata(head, ev):
        packet = _xmp_packet(head) or _xmp_packet(tail)
        if packet:
            _read_xmp(packet, ev)
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
    ev = _Evidence(cap=time_cap, deadline=time.monotonic() + time_cap)
    try:
        if isinstance(source, bytes):
            _evidence_of_bytes(source, ev)
        else:
            _evidence_of_path(source, ev)
    except Exception as exc:  # whatever a hostile file does to a parser, the scan goes on
        ev.notes.append(f"provenance: reading failed ({type(exc).__name__}: {clean(exc, 80)})")
    return ev.decide()
