"""What one file's provenance reading gathers, and the rules every format's reader writes it by.

The readers of each format (inputs/c2pa_manifest.py, xmp_labels.py, generator_settings.py,
image_metadata.py) fill one :class:`Evidence`; inputs/provenance.py decides the kind from it. File
metadata is attacker-controlled: every text taken from a file goes through :func:`clean`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

FIELD_MAX = 60  # characters of one name (signer, tool, model) within the detail

# IPTC digital source types (http://cv.iptc.org/newscodes/digitalsourcetype/NAME), by what they claim.
GENERATED_SOURCES = {"trainedAlgorithmicMedia", "algorithmicMedia"}
COMPOSITE_SOURCES = {"compositeWithTrainedAlgorithmicMedia", "compositeSynthetic", "composite", "compositeCapture"}
AI_COMPOSITE_SOURCES = {"compositeWithTrainedAlgorithmicMedia", "compositeSynthetic"}


@dataclass
class Evidence:
    """What one file gave, by kind of evidence; ``notes`` are failures and facts that decide no kind."""

    cap: float  # the time cap, seconds (said in the note when it is reached)
    deadline: float  # time.monotonic() by which the reading gives up
    c2pa: tuple[str, str] | None = None  # (kind, text)
    label: str | None = None  # an IPTC/XMP DigitalSourceType that claims generation
    generator: str | None = None
    camera: str | None = None
    notes: list[str] = field(default_factory=list)

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


def clean(text: Any, limit: int = FIELD_MAX) -> str:
    """``text`` on one line of printable characters (others as \\xNN / \\uNNNN escapes), cut to ``limit``
    characters with an ellipsis: file metadata is attacker-controlled, and a table cell is no place for a
    newline, a terminal escape or a kilobyte of prompt."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = " ".join(str(text).split())
    text = "".join(c if c.isprintable() else (f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}") for c in text[: limit * 2])
    return text if len(text) <= limit else text[: limit - 1] + "…"


def source_name(uri: str) -> str:
    """The IPTC digital source type's name from its URI (``…/digitalsourcetype/trainedAlgorithmicMedia``)."""
    return clean(str(uri).rstrip("/").rsplit("/", 1)[-1], FIELD_MAX)
