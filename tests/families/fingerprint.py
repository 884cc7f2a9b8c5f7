"""Fingerprints of short training runs on the tiny SD 1.x / 2.x / SDXL models: the LoRA and frozen-layer
outputs' tensors, the samples' pixels and the losses, hashed.  The model-family registry moved these
families' knowledge out of the engine; the fingerprints taken before the move (``fingerprints.json``) and
after must be equal, bit for bit.

    python -m tests.families.fingerprint OUT.json     # take them (a few tens of seconds on 2 cores)

Float results depend on the CPU's kernels, so a fingerprint file records the machine it was taken on and
the test compares only on the same kind of machine (``machine_key``).
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import tempfile
from pathlib import Path

ARCHITECTURES = ("sd15", "sd2", "sdxl")


def machine_key() -> str:
    import torch

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()} | {cpu} | torch {torch.__version__} | threads {torch.get_num_threads()}"


def _digest_tensors(path: Path) -> str:
    from safetensors.torch import load_file

    digest = hashlib.sha256()
    for name, tensor in sorted(load_file(path).items()):
        digest.update(name.encode())
        digest.update(tensor.contiguous().view(-1).view(dtype=__import__("torch").uint8).numpy().tobytes())
    return digest.hexdigest()


def _digest_image(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as image:
        return hashlib.sha256(image.convert("RGB").tobytes()).hexdigest()


def _run(config, run_dir: Path) -> dict[str, object]:
    from tests.trainer.helpers import run_in_process
    from trainer.protocol import EXIT_OK, Failed, Finished, Sample
    from trainer.runfolder import RunFolder

    code, recorder = run_in_process(config, run_dir)
    if code != EXIT_OK:
        raise RuntimeError(str(recorder.of(Failed)))
    result: dict[str, object] = {}
    for output in recorder.of(Finished)[0].outputs:
        path = Path(output)
        files = sorted(path.rglob("*.safetensors")) if path.is_dir() else [path]
        for file in files:
            if file.suffix == ".safetensors":
                result[str(file.relative_to(run_dir))] = _digest_tensors(file)
    for event in recorder.of(Sample):
        for image in event.paths:
            result[str(Path(image).relative_to(run_dir))] = _digest_image(Path(image))
    result["losses"] = [row["loss"] for row in RunFolder(run_dir).read_metrics() if "loss" in row]
    return result


def take() -> dict[str, object]:
    import torch

    from tests.diffusion.conftest import diffusion_config, draw_shapes
    from trainer.models.tiny import build_tiny_model

    torch.manual_seed(0)
    result: dict[str, object] = {"machine": machine_key()}
    with tempfile.TemporaryDirectory(prefix="kamaal-fingerprint-") as tmp:
        root = Path(tmp)
        data = draw_shapes(root / "shapes", 4)
        for arch in ARCHITECTURES:
            model = build_tiny_model(root / f"tiny-{arch}", arch, seed=0)
            common = {"training": {"steps": 4, "batch_size": 2, "eval_every": 2, "seed": 1},
                      "sampling": {"prompts": ["a red circle"], "seeds": [7], "inference_steps": 2, "at_start": False}}
            lora = diffusion_config(model, data, arch, lora={"rank": 4, "alpha": 8.0, "train_text_encoder": True},
                                    **common)
            result[f"{arch}-lora"] = _run(lora, root / f"{arch}-lora")
            frozen = diffusion_config(model, data, arch, mode="frozen", frozen={"trainable": ["up_blocks.1"]},
                                      **common)
            result[f"{arch}-frozen"] = _run(frozen, root / f"{arch}-frozen")
    return result


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(json.dumps(take(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
