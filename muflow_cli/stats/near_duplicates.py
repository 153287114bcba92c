"""Near-duplicate faces, found by what they show: the groups a calibration split must not cut through.

Two faces belong together when one is a near-copy of the other — frames of one clip, shots of one burst,
one photo re-saved, resized or renamed. If such a pair straddled the fit/calibration split, the held-out
scores would be those of faces the flows had as good as seen, and new reals would be flagged far more
often than the stated rate. File names cannot tell: every camera numbers its photos, so IMG_0001…IMG_0054
are as likely 54 people as one burst.

Each aligned crop gets two fingerprints: a 64-bit perceptual hash of its grey pixels (``imagehash.phash``:
the signs of the low DCT frequencies, kept by re-saving and resizing) and a 16x16 colour thumbnail in
CIELAB, centred and scaled to unit length (the hash is blind to colour; lighting and colour cast tell one
scene from another). Faces are linked when

- they come from the same file (a base group: the caller's), or
- they are near-copies anywhere in the set (as they are or one of them mirrored): hash distance <= COPY_BITS and thumbnail cosine >= COPY_COSINE, or
- their files were taken one after the other — within NEXT_RANKS places of one numbered sequence
  (frame_0012.png, frame_0017.png) or within BURST_SECONDS by their EXIF clocks — and they look alike
  by the looser NEXT_BITS / NEXT_COSINE: a face moves between frames, but not far.

and each connected set of links is one group. The thresholds were set on the default model's fit data
(scripts/default_data.py: 556 faces of 4 videos, 10 CK+ sequences and 18 photos; docs/method.md): none of
the 135,424 pairs of faces from different sources passes the near-copy rule (the closest: 8 bits apart at
cosine 0.948, just under the cut), 93 % of consecutive sampled frames (every 5th frame) do; the looser rule
links 98 % of consecutive frames and 0.1 % of pairs from different sources, which it only ever looks at
when their files are neighbours in time. Single linkage can chain: the fit reports the largest group.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

COPY_BITS, COPY_COSINE = 16, 0.95  # near-copies wherever they are in the set
NEXT_BITS, NEXT_COSINE = 24, 0.90  # alike enough for neighbours in time
NEXT_RANKS = 2  # files this many places apart in a numbered sequence are neighbours
BURST_SECONDS = 10.0  # files whose EXIF times are this close are neighbours
THUMB = 16  # side of the colour thumbnail


@dataclass
class Fingerprints:
    """Per face: the perceptual hash (uint64) and the unit-length colour thumbnail (float32)."""

    phash: np.ndarray  # (N, 2) uint64: of the crop, and of its mirror image
    colour: np.ndarray  # (N, 2, THUMB * THUMB * 3) float32: likewise

    def __len__(self) -> int:
        return len(self.phash)

    def __getitem__(self, index) -> Fingerprints:
        return Fingerprints(self.phash[index], self.colour[index])

    @staticmethod
    def concat(parts: list[Fingerprints]) -> Fingerprints:
        return Fingerprints(np.concatenate([p.phash for p in parts]), np.concatenate([p.colour for p in parts]))


@dataclass(frozen=True)
class Links:
    """How many links of each kind made the groups (for the fit's report and the docs)."""

    same_file: int
    copies: int
    neighbours: int


def fingerprint(crops) -> Fingerprints:
    """Fingerprints of aligned RGB uint8 crops (an array or anything indexable with a length, such as the fit's
    crops on disk: nn/row_store.py), read one crop at a time."""
    import imagehash
    from PIL import Image

    n = len(crops)
    phash = np.zeros((n, 2), np.uint64)
    colour = np.zeros((n, 2, THUMB * THUMB * 3), np.float32)
    for i in range(n):
        face = np.ascontiguousarray(crops[i])
        for m, crop in enumerate((face, np.ascontiguousarray(face[:, ::-1]))):
            bits = imagehash.phash(Image.fromarray(crop), hash_size=8).hash.ravel()
            phash[i, m] = np.packbits(bits).view(">u8")[0]
            small = cv2.cvtColor(cv2.resize(crop, (THUMB, THUMB), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2LAB)
            v = small.astype(np.float32).ravel()
            v -= v.mean()
            colour[i, m] = v / max(float(np.linalg.norm(v)), 1e-6)
    return Fingerprints(phash, colour)


def similarity(a: Fingerprints, b: Fingerprints) -> tuple[np.ndarray, np.ndarray]:
    """(cosine, hash bits apart) of every pair, each taken for the better of ``b`` as it is and mirrored:
    a mirrored re-post is a near-copy too."""
    cosine = np.maximum(a.colour[:, 0] @ b.colour[:, 0].T, a.colour[:, 0] @ b.colour[:, 1].T)
    bits = np.minimum(np.bitwise_count(a.phash[:, None, 0] ^ b.phash[None, :, 0]),
                      np.bitwise_count(a.phash[:, None, 0] ^ b.phash[None, :, 1]))
    return cosine, bits


def near_duplicate_groups(
    prints: Fingerprints, base: np.ndarray, sequence: np.ndarray, rank: np.ndarray, time: np.ndarray
) -> tuple[np.ndarray, Links]:
    """Group index of each face (0..G-1) and the links that made them.

    ``base``: the caller's group of each face (its file: faces of one photo share its camera and
    compression); ``sequence``, ``rank``: each face's numbered sequence (an integer id) and its file's
    rank there (inputs/capture.py); ``time``: its file's EXIF time in seconds (NaN: none). Pairs are
    compared a block of rows at a time, so memory stays O(block x N) while the work is O(N²): 10,000
    faces take a few seconds."""
    n = len(prints)
    base, sequence, rank = np.asarray(base), np.asarray(sequence), np.asarray(rank)
    time = np.asarray(time, np.float64)
    rows, cols = [], []
    # faces of one base group: chain them (consecutive members suffice for connectivity)
    order = np.argsort(base, kind="stable")
    chain = np.flatnonzero(base[order][1:] == base[order][:-1])
    rows.append(order[chain])
    cols.append(order[chain + 1])
    same_file = len(chain)
    copies = neighbours = 0
    block = int(max(64, min(1024, 2**24 // max(n, 1))))
    for s in range(0, n, block):
        e = min(n, s + block)
        cosine, bits = similarity(prints[s:e], prints)
        upper = np.arange(n)[None, :] > np.arange(s, e)[:, None]  # each pair once
        copy = upper & (bits <= COPY_BITS) & (cosine >= COPY_COSINE)
        alike = upper & ~copy & (bits <= NEXT_BITS) & (cosine >= NEXT_COSINE)
        i, j = np.nonzero(alike)
        i += s
        near = ((sequence[i] == sequence[j]) & (np.abs(rank[i] - rank[j]) <= NEXT_RANKS)) | (
            np.abs(time[i] - time[j]) <= BURST_SECONDS)
        ci, cj = np.nonzero(copy)
        rows += [ci + s, i[near]]
        cols += [cj, j[near]]
        copies += len(ci)
        neighbours += int(near.sum())
    r, c = np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)
    graph = coo_matrix((np.ones(len(r), np.int8), (r, c)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels, Links(same_file, copies, neighbours)
