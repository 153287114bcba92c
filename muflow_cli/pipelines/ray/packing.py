"""A part's face-finding results (FileFaces) as safetensors bytes, to cross the object store between
the face-finding and scoring actors: arrays for the faces, a uint8 array of JSON for the rest.

Ray would pickle the objects between stages; muflow unpickles nothing, its own data included."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np

from muflow_cli.faces.face import Face, FileFaces
from muflow_cli.inputs.compression import Compression
from muflow_cli.inputs.provenance import Provenance


def pack_faces(results: list[FileFaces]) -> bytes:
    """The safetensors bytes of a part's results, in order."""
    from safetensors.numpy import save

    faces = [f for r in results for f in (r.faces or [])]
    size = results and next((f.crop.shape[0] for f in faces), 0) or 0
    files = [{"path": str(r.path), "status": r.status, "message": r.message, "size": list(r.image_size) if r.image_size else None,
              "faces": len(r.faces or []), "provenance": [r.provenance.kind, r.provenance.detail] if r.provenance else None,
              "compression": asdict(r.compression) if r.compression else None}  # the face's calibration stratum
             for r in results]
    arrays = {
        "files": np.frombuffer(json.dumps(files).encode(), np.uint8),
        "crops": np.stack([f.crop for f in faces]) if faces else np.zeros((0, size, size, 3), np.uint8),
        "boxes": np.array([f.box for f in faces], np.float64).reshape(-1, 4),
        "landmarks": np.array([f.landmarks for f in faces], np.float64).reshape(-1, 5, 2),
        "det_scores": np.array([f.det_score for f in faces], np.float64),
        "scales": np.array([f.scale for f in faces], np.float64),
        # the crop pixels inside the image (faces/align.py): a masked model scores only those
        "valid": (np.stack([f.mask for f in faces]).astype(np.uint8)
                  if faces else np.zeros((0, size, size), np.uint8)),
    }
    return save(arrays)


def unpack_faces(blob: bytes) -> list[FileFaces]:
    """The inverse of :func:`pack_faces`."""
    from safetensors.numpy import load

    arrays = load(blob)
    files = json.loads(arrays["files"].tobytes())
    out, k = [], 0
    for f in files:
        faces = [Face(arrays["boxes"][i], float(arrays["det_scores"][i]), arrays["landmarks"][i], arrays["crops"][i],
                      float(arrays["scales"][i]), arrays["valid"][i].astype(bool)) for i in range(k, k + f["faces"])]
        k += f["faces"]
        out.append(FileFaces(f["path"], f["status"], f["message"], faces if f["status"] == "ok" or faces else
                             ([] if f["status"] == "no_face" else None), tuple(f["size"]) if f["size"] else None,
                             provenance=Provenance(*f["provenance"]) if f.get("provenance") else None,
                             compression=Compression(**f["compression"]) if f.get("compression") else None))
    return out
