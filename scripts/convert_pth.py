"""Convert a PyTorch state-dict file (.pth/.pt) to safetensors, once, so muflow can read it.

    python scripts/convert_pth.py resnet50.pth resnet50.safetensors

muflow itself never unpickles files. This one-off script does, with
``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers.
A checkpoint that wraps the weights (e.g. under "state_dict" or "model") is unwrapped.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    src, dst = Path(argv[0]), Path(argv[1])
    state = torch.load(src, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    tensors = {k.removeprefix("module."): v.contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
    save_file(tensors, str(dst), metadata={"converted_from": src.name})
    print(f"{len(tensors)} tensors -> {dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
