"""The XMP packet: an IPTC DigitalSourceType label (what the file claims it is), the CreatorTool, a remote
C2PA manifest's address (never fetched). Parsed by defusedxml (no entities, no DTD), bounded to
:data:`XMP_MAX_BYTES`."""

from __future__ import annotations

from muflow_cli.inputs.generator_settings import names_generator
from muflow_cli.inputs.provenance_evidence import AI_COMPOSITE_SOURCES, GENERATED_SOURCES, Evidence, clean, source_name

XMP_MAX_BYTES = 1 << 20  # a larger XMP packet is not parsed (said in the detail)

NS_IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
NS_XMP = "http://ns.adobe.com/xap/1.0/"
NS_DCTERMS = "http://purl.org/dc/terms/"
NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XMP_FIELDS = {f"{{{NS_IPTC_EXT}}}DigitalSourceType": "source", f"{{{NS_XMP}}}CreatorTool": "tool",
              f"{{{NS_DCTERMS}}}provenance": "remote"}


def xmp_packet(data: bytes) -> bytes | None:
    """The XMP packet found in raw bytes (formats Pillow cannot open, or no packet where Pillow looked)."""
    start = data.find(b"<x:xmpmeta")
    if start < 0:
        return None
    end = data.find(b"</x:xmpmeta>", start)
    return data[start : end + len(b"</x:xmpmeta>")] if end >= 0 else data[start:]


def read_xmp(packet: bytes | str, ev: Evidence) -> None:
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
    sources = list(dict.fromkeys(source_name(v) for v in values.get("source", [])))
    tool = clean(values["tool"][0]) if values.get("tool") else None
    ai = [s for s in sources if s in GENERATED_SOURCES | AI_COMPOSITE_SOURCES]
    if ai:
        ev.label = "xmp DigitalSourceType " + clean(", ".join(ai)) + (f"; CreatorTool {tool}" if tool else "")
    elif sources:
        ev.notes.append("xmp DigitalSourceType " + clean(", ".join(sources)))
    if tool and names_generator(tool):
        ev.generator = ev.generator or f"xmp CreatorTool {tool}"
    elif tool and not ai:
        ev.notes.append(f"xmp CreatorTool {tool}")
    remote = [v for v in values.get("remote", []) if v.lower().startswith(("http://", "https://"))]  # not self#jumbf=…
    if remote:
        ev.notes.append(f"xmp: remote C2PA manifest at {clean(remote[0])} not fetched")
