"""C2PA Content Credentials: the manifest store read and validated by c2pa-python (the C2PA SDK's official
bindings), offline (no remote manifest and no OCSP responder is ever fetched), on a daemon thread given up at
the time cap. Gives a kind (invalid, generated, edited, captured) and what the manifest says."""

from __future__ import annotations

import io
import json
import threading
from typing import Any, BinaryIO

from muflow_cli.inputs.provenance_evidence import COMPOSITE_SOURCES, GENERATED_SOURCES, Evidence, clean, source_name

MAX_INGREDIENT_DEPTH = 8  # parent manifests followed for a generated origin
CREATED_ACTIONS = {"c2pa.created"}
UNTRUSTED = "signingCredential.untrusted"
# c2pa-python errors (their messages start with the type) that mean "a manifest store is there but broken".
BROKEN_MANIFEST = ("Verify", "Manifest", "Decoding", "Signature", "Assertion", "AssertionNotFound", "Json", "Encoding")

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
            found |= {source_name(a["digitalSourceType"]) for a in _actions(parent) if a.get("digitalSourceType")}
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
    sources = {source_name(a["digitalSourceType"]) for a in actions if a.get("digitalSourceType")}
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
        shown = [str(a.get("action", "?")) + (f" ({source_name(a['digitalSourceType'])})" if a.get("digitalSourceType") else "")
                 for a in actions[:4]]
        parts.append("actions " + clean(", ".join(shown) + (f" +{len(actions) - 4}" if len(actions) > 4 else ""), 160))
    if parents:
        parts.append("parent " + clean(", ".join(sorted(parents))))
    return kind, "; ".join(parts)


def read_c2pa(source: bytes | BinaryIO, ev: Evidence) -> bool:
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
