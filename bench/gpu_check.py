"""``make gpu-check``: Kamaal's CUDA paths run for real, and the GPU rows get numbers.

    python -m bench.gpu_check [--dry-run] [--budget-s 480] [--only TEXT ...] [--references base|all]
                              [--keep-models DIR] [--no-pytest] [--out FILE]

On a CUDA GPU, within ``--budget-s`` (8 minutes) in all, with random-weight models built from configs (SD's
bundled in ``resources/model_configs``, SD 3.5's, Flux's and Chroma's written out in ``gpu_cases.REAL_SIZE``; nothing
is downloaded):

1. Kamaal's real trainer — the **Measure** task, i.e. ``run_worker``, the app's own code path — on full-size
   SD 1.5 at 512 px and SDXL at 1024 px, LoRA rank 16, batch 1, latent + text caching on, for each case of
   ``CASES`` (bf16; fp16 with a GradScaler; gradient checkpointing; 8-bit AdamW): it/s over ``STEPS`` steps
   after ``WARMUP``, peak allocated and reserved VRAM, every loss finite.  Then the flow-matching transformer
   families, after every SD case so that a short budget keeps the SD paths: SD 3.5 Medium and Flux.1-dev
   (12 B) at 1024 px, bf16, with and without gradient checkpointing, and Flux as its 24/16/12 GB presets train
   it (fp8 and nf4 bases, text encoders off the GPU, block swap on nf4), then Chroma1-HD (8.9 B) as its 24 and
   16 GB presets train it (bf16 and fp8 bases, checkpointing), on random models built from the configs written
   out in ``gpu_cases.REAL_SIZE`` (about 8, 25 and 18 GB of folder, plus one shared 19 GB T5-XXL); then
   Z-Image (6 B) and Qwen-Image (20 B) as their presets train them, from their bundled configs (20 GB and 58 GB of
   folder, bf16 throughout); last,
   Flux.2 klein 4B as its 12 GB preset trains it (nf4 base), built from its bundled configs; and
   Lumina 2 as its presets train it (bf16, with checkpointing and without), built from its shipped folder
   ``resources/model_configs/lumina-image-2`` (about 16 GB), prompts tokenised by the tiny Gemma vocabulary; and
   ERNIE-Image as its 12 GB preset trains it (nf4 base), from ``resources/model_configs/ernie-image`` (about 24 GB),
   prompts tokenised by the tiny Tekken-shaped vocabulary.
   Ideogram 4 as its 24/16 GB presets train it (nf4 transformers), from ``resources/model_configs/ideogram-4``
   (about 54 GB of folder: keep no other family's models there), the shipped Qwen3 vocabulary with Qwen3-VL's turns.
   Each case in its own process (clean peaks; an out-of-memory case is a row, not the end); each family's
   models are built when its first case comes, so a budget spent on SD builds no Flux.
2. The diffusers-style reference loop (``bench/reference_loop.py``: VAE and text encoders every step) with the
   same model, images and settings, for the speed ratio Kamaal ÷ reference (``--references all``: for every
   case; by default for each architecture's first case).  SD 1.x and SDXL only: the flow families' rows
   say "no reference loop".
3. The memory estimate (``trainer/memory_estimate.py``) of each case against its measured peak allocated:
   the estimate's error in % (positive: the estimate is too high).
4. ``pytest -m cuda`` on ``CUDA_TESTS`` with the time kept for it.

Results: ``bench/results/gpu-<UTC time>.json`` and a table (``make bench`` shows the newest file's rows).
A case the budget cannot fit is skipped with the reason; a case that needs what this machine lacks
(bitsandbytes for 8-bit AdamW) likewise.  Without CUDA it says so in one line and exits 0.
``--dry-run`` runs the same script on the CPU with tiny models and a few steps (cases that need CUDA are
skipped, saying why; tiny SD 3.5, Flux and Chroma are built by the same builder as the real ones); ``make test`` runs
it (``tests/bench/test_gpu_check.py``).

``make gpu-check`` is ``python -m bench.gpu_check`` in the project's venv (``GPU_CHECK_ARGS=...`` passes options).
A session lent one of the GPU machines (Python 3.12 with CUDA torch, no registry) first runs
``bench/gpu_wheels.sh`` here, then one device run, carrying ``.whl``, with ``timeout_s`` 540 (with the start,
it leaves 4–5 minutes of the 15 minutes of device time for a second, shorter try on the warm machine, e.g.
``--only sdxl --no-pytest --budget-s 200``: the models are kept).  The default budget is spent on SD: the flow
families need sessions of their own, e.g. ``--only flux --no-pytest`` (build + two cases planned at ~450 s),
then ``--only sd3 --no-pytest``, ``--only chroma --no-pytest``, ``--only zimage --no-pytest``,
``--only qwenimage --no-pytest`` (its folder needs
58 GB of the machine's 64 GB disk: keep no other family's models there), added to the same command.  The command::

    set -o pipefail; python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site
    .whl/*.whl && export PYTHONPATH=/tmp/site || exit 1; export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1; python3 -m
    bench.gpu_check --keep-models /tmp/kamaal-gpu-models --out $OUT/gpu-check.json 2>&1 | tee
    $OUT/gpu-check.txt; tar czf $OUT/gpu-check-logs.tgz -C $OUT gpu-check.logs && rm -rf $OUT/gpu-check.logs

(one line).  Its ``gpu-check.json`` is committed as ``bench/results/gpu-<when>.json`` (``make bench`` then shows
it) and its table goes to README ▸ Performance ▸ GPU check.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.__main__ import write_json
from bench.reference_loop import draw_shapes
from trainer.families import family

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
BUDGET_S = 480
PYTEST_RESERVE_S = 120  # kept for step 4 while the cases run
CUDA_TESTS = ("tests/diffusion/test_devices.py",)  # where the tests marked cuda live (Qt-free: no GUI needed)
RANK = 16
REFERENCE_ARCHS = ("sd15", "sdxl")  # the families bench/reference_loop.py trains


@dataclass(frozen=True)
class Scale:
    """Real size on CUDA, or the dry run's tiny models on the CPU."""

    device: str
    tiny: bool
    resolution: dict[str, int]
    warmup: int
    steps: int
    seconds: dict[str, int]  # rough time one case (or reference) takes, model load included: budget planning only
    build_seconds: dict[str, int]  # rough time building (and writing) one architecture's random model takes


# CUDA's seconds are guesses (start + imports ~8 s, loading 2.4 / 8.6 GB of fp16 weights, 23 steps; SD 3.5 Medium
# 5 GB bf16 + 19 GB fp32 T5 read as bf16; Flux 24 GB + the T5, ~1.5 s a step at 1024 px), not measured yet.
# Z-Image: 12 GB of bf16 transformer + 8 GB Qwen3-4B; Qwen-Image: 41 GB + 16.6 GB Qwen2.5-VL, read and quantized on
# the way; Flux.2 klein 4B: 7.8 GB of bf16 transformer and 8 GB of Qwen3-4B; Lumina 2: 5 GB + 5 GB Gemma 2; ERNIE-Image:
# 16 GB of bf16 transformer, read and quantized, + 7.7 GB Mistral3Model; Kandinsky 5 Image: 12 GB + 16.6 GB
# Qwen2.5-VL + CLIP (guesses).
CUDA = Scale("cuda", False, {"sd15": 512, "sdxl": 1024, "sd3": 1024, "flux": 1024, "chroma": 1024, "zimage": 1024,
                             "qwenimage": 1024, "flux2klein": 1024, "lumina2": 1024, "ernieimage": 1024,
                             "kandinsky5": 1024, "qwenimage21": 1024, "krea2": 1024, "ideogram4": 1024,
                             "hidream": 1024, "fluxkontext": 1024, "qwenimageedit": 1024, "flux2kleinedit": 1024,
                             "flux2devedit": 1024},
             warmup=3,
             steps=20,
             seconds={"sd15": 30, "sdxl": 60, "sd3": 90, "flux": 150, "chroma": 120, "zimage": 120, "qwenimage": 300,
                      "flux2klein": 90, "lumina2": 80, "ernieimage": 150, "kandinsky5": 150, "qwenimage21": 150,
                      "krea2": 200, "ideogram4": 240, "hidream": 360, "fluxkontext": 180, "qwenimageedit": 330,
                      "flux2kleinedit": 120, "flux2devedit": 600},
             build_seconds={"sd15": 20, "sdxl": 40, "sd3": 120, "flux": 150, "chroma": 110, "zimage": 90,
                            "qwenimage": 240, "flux2klein": 90, "lumina2": 90, "ernieimage": 150, "kandinsky5": 150,
                            "qwenimage21": 150, "krea2": 160, "ideogram4": 300, "hidream": 300,
                            "fluxkontext": 150, "qwenimageedit": 240, "flux2kleinedit": 90, "flux2devedit": 900})
DRY_RUN = Scale("cpu", True, {"sd15": 64, "sdxl": 64, "sd3": 64, "flux": 64, "chroma": 64, "zimage": 64,
                              "qwenimage": 64, "flux2klein": 64, "lumina2": 64, "ernieimage": 64,
                              "kandinsky5": 64, "qwenimage21": 64, "krea2": 64, "ideogram4": 64,
                              "hidream": 64, "fluxkontext": 64, "qwenimageedit": 64, "flux2kleinedit": 64,
                              "flux2devedit": 64}, warmup=1,
                steps=3,
                seconds={"sd15": 15, "sdxl": 15, "sd3": 15, "flux": 15, "chroma": 15, "zimage": 15, "qwenimage": 15,
                         "flux2klein": 20, "lumina2": 15, "ernieimage": 20, "kandinsky5": 15,
                         "qwenimage21": 15, "krea2": 20, "ideogram4": 20, "hidream": 20, "fluxkontext": 15,
                         "qwenimageedit": 30, "flux2kleinedit": 20, "flux2devedit": 20},
                build_seconds={"sd15": 5, "sdxl": 5, "sd3": 5, "flux": 5, "chroma": 5, "zimage": 5, "qwenimage": 5,
                               "flux2klein": 10, "lumina2": 5, "ernieimage": 10, "kandinsky5": 5,
                               "qwenimage21": 5, "krea2": 10, "ideogram4": 10, "hidream": 10,
                               "fluxkontext": 5, "qwenimageedit": 5, "flux2kleinedit": 10,
                               "flux2devedit": 10})


@dataclass(frozen=True)
class Case:
    arch: str  # "sd15", "sdxl", "sd3" (SD 3.5 Medium), "flux" (Flux.1-dev), "chroma" (Chroma1-HD), "zimage", …
    precision: str = "bf16"  # or "fp16": autocast + GradScaler
    checkpointing: bool = False
    optimizer: str = "adamw"  # or "adamw8bit" (bitsandbytes)
    with_reference: bool = False  # run the reference loop beside it by default
    quantization: str = "none"  # model.base_quantization: "nf4", "int8", "fp8"
    swap: int = 0  # model.blocks_to_swap
    text_quantization: str = "none"  # model.text_encoder_quantization
    # Why the real-size case cannot run on the lent GPU machine (its dry run still trains it), or None.
    too_big: str | None = None

    def name(self, scale: Scale) -> str:
        extras = [self.precision] + (["ckpt"] if self.checkpointing else []) + [self.optimizer]
        extras += [self.quantization] if self.quantization != "none" else []
        extras += [f"te-{self.text_quantization}"] if self.text_quantization != "none" else []
        extras += [f"swap{self.swap}"] if self.swap else []
        return f"{self.arch} {scale.resolution[self.arch]}px " + " ".join(extras)

    @property
    def flow(self) -> bool:
        """A flow-matching transformer family: its own model builder, no reference loop."""
        return self.arch not in REFERENCE_ARCHS

    def missing_on(self, scale: Scale) -> str | None:
        """Why this machine cannot run the case, or None."""
        if scale.device == "cuda" and self.too_big:
            return self.too_big
        if scale.device == "cpu" and self.precision == "fp16":
            return "needs CUDA: the CPU has no fp16 autocast (Kamaal trains fp32 there)"
        if scale.device == "cpu" and self.optimizer == "adamw8bit":
            return "needs CUDA: 8-bit AdamW (bitsandbytes) is refused on the CPU"
        if self.optimizer == "adamw8bit" and importlib.util.find_spec("bitsandbytes") is None:
            return "bitsandbytes is not installed (make test or pip install -c constraints.txt -e . installs it)"
        return None


# In order of importance: what runs first survives a short budget.  Every code path on SD 1.5 first (cheap),
# then SDXL's baseline with its reference, then SDXL's variants; then SD 3.5 and Flux (each family's
# first case builds its model; Flux trains with gradient checkpointing first, as Flux LoRAs are trained, then
# as the 16/12 GB presets do — an nf4 base — then the 24 GB preset's fp8 base and block swap; Chroma as its 24 GB
# and 16 GB presets train it); last Z-Image and
# Qwen-Image as their presets train them (Z-Image: bf16 for 24 GB, fp8 for 16; Qwen-Image: nf4 for 24 GB, and the
# 16 GB preset's nf4 base, fp8 Qwen2.5-VL and 20 blocks swapped).
CASES = (
    Case("sd15", with_reference=True),
    Case("sd15", precision="fp16"),
    Case("sd15", optimizer="adamw8bit"),
    Case("sd15", checkpointing=True),
    Case("sdxl", with_reference=True),
    Case("sdxl", precision="fp16"),
    Case("sdxl", checkpointing=True),
    Case("sdxl", optimizer="adamw8bit"),
    Case("sd3"),
    Case("flux", checkpointing=True),
    Case("flux", checkpointing=True, quantization="nf4"),
    Case("sd3", checkpointing=True),
    Case("flux", checkpointing=True, quantization="fp8"),
    Case("flux", checkpointing=True, quantization="nf4", swap=20),
    Case("flux"),
    Case("chroma", checkpointing=True),  # the 24 GB preset: an unquantized bf16 base
    Case("chroma", checkpointing=True, quantization="fp8"),  # the 16 GB preset
    Case("zimage", checkpointing=True),
    Case("zimage", checkpointing=True, quantization="fp8"),
    Case("qwenimage", checkpointing=True, quantization="nf4"),
    Case("qwenimage", checkpointing=True, quantization="nf4", text_quantization="fp8", swap=20),
    # Flux.2 klein 4B as its 12 GB preset trains it: an nf4 base, with checkpointing.
    Case("flux2klein", checkpointing=True, quantization="nf4"),
    Case("lumina2", checkpointing=True),  # as its 16 and 12 GB presets train it
    Case("lumina2"),  # its 24 GB preset: no checkpointing
    # ERNIE-Image (8 B) as its 12 GB preset trains it: an nf4 base, with checkpointing.
    Case("ernieimage", checkpointing=True, quantization="nf4"),
    Case("kandinsky5", checkpointing=True),  # as its 24 GB preset trains it: a bf16 base
    # Qwen-Image 2.1 as its 16 GB preset trains it: fp8 base, Qwen3-VL in fp8 while it encodes, checkpointing.
    Case("qwenimage21", checkpointing=True, quantization="fp8", text_quantization="fp8"),
    Case("krea2", checkpointing=True, quantization="nf4"),  # Krea 2 Raw as its 16 GB preset trains it
    # Ideogram 4 as its 24/16 GB presets train it: both 9.3 B transformers in nf4, with checkpointing.
    Case("ideogram4", checkpointing=True, quantization="nf4"),
    # Flux.1 Kontext as its 16/12 GB presets train it: an nf4 base, checkpointing, the control image's tokens beside
    # the target's (twice Flux.1's image sequence).
    Case("fluxkontext", checkpointing=True, quantization="nf4"),
    # Flux.2 klein edit as its 12 GB preset trains it: an nf4 base, checkpointing, one reference image's tokens beside
    # the target's.
    Case("flux2kleinedit", checkpointing=True, quantization="nf4"),
    # Flux.2 dev edit as its 24 GB preset trains it: nf4 base, Mistral in nf4 while it encodes, 33 blocks swapped, one
    # reference's tokens beside the target's.  Dry run only, as for Flux.2 dev (which has no case for that reason).
    Case("flux2devedit", checkpointing=True, quantization="nf4", text_quantization="nf4", swap=33,
         too_big="too big for the lent machine: the random full-size Flux.2 dev folder (64 GB transformer + 48 GB "
                 "Mistral in bf16) does not fit its 64 GB disk"),
    # Qwen-Image-Edit as its 16 GB preset trains it: nf4 base, checkpointing, Qwen2.5-VL in fp8 reading each pair's
    # control as pictures, the control's tokens beside the target's.
    Case("qwenimageedit", checkpointing=True, quantization="nf4", text_quantization="fp8", swap=50),
    # HiDream-I1 as its 16 GB preset trains it: nf4 base, nf4 text encoders while they encode, 16 blocks swapped.
    # Its random folder is 61 GB in bf16 (17.1 B transformer, Llama 3.1 8B, T5-XXL, CLIPs): on the lent machine's
    # 64 GB disk it is built last, alone.
    Case("hidream", checkpointing=True, quantization="nf4", text_quantization="nf4", swap=16),
)


def with_controls(folder: Path) -> Path:
    """``folder``'s images made before/after pairs for an edit family, which trains on pairs only: each image's
    mirror image beside it as its control (``NAME_control.png``, the suffix convention)."""
    from PIL import Image

    for image in sorted(folder.glob("*.png")):
        with Image.open(image) as opened:
            opened.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(image.with_name(f"{image.stem}_control.png"))
    return folder


class Clock:
    def __init__(self, budget_s: float, reserve_s: float) -> None:
        self.started, self.budget_s, self.reserve_s = time.monotonic(), budget_s, reserve_s

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self, keep_reserve: bool = True) -> float:
        return self.budget_s - self.elapsed() - (self.reserve_s if keep_reserve else 0)


def run_piece(kind: str, spec: dict[str, Any], work: Path, name: str, timeout_s: float) -> dict[str, Any]:
    """One piece of work in its own process (``bench.gpu_cases``); its output goes to ``work/<name>.log``
    (kept beside the results JSON; ``"log"`` names the file there)."""
    slug = "".join(c if c.isalnum() else "-" for c in name)
    spec_path, result_path, log_path = (work / f"{slug}.{ext}" for ext in ("spec.json", "result.json", "log"))
    spec_path.write_text(json.dumps({"kind": kind, **spec}), encoding="utf-8")
    result_path.unlink(missing_ok=True)
    started = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log:
        try:
            code = subprocess.run([sys.executable, "-m", "bench.gpu_cases", str(spec_path), str(result_path)],
                                  cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=max(timeout_s, 1),
                                  check=False).returncode
        except subprocess.TimeoutExpired:
            return {"status": f"timed out after {timeout_s:.0f} s (budget)", "wall_s": round(timeout_s, 1),
                    "log": log_path.name}
    wall = round(time.monotonic() - started, 1)
    if not result_path.is_file():  # killed (the OOM killer, a crash in native code): no result written
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or [""]
        return {"status": f"failed: exit {code}; {tail[0][:200]}", "wall_s": wall, "log": log_path.name}
    return {**json.loads(result_path.read_text(encoding="utf-8")), "wall_s": wall, "log": log_path.name}


class Models:
    """Each architecture's random model, built when its first case comes (a budget spent before then builds
    nothing: Flux's 44 GB are never written for a check that only reaches SDXL).  On CUDA one ``models`` piece
    per architecture; in the dry run (tiny models, cheap) one for all the selected ones of the same kind —
    SD's UNets, the flow transformers — to start fewer processes."""

    def __init__(self, scale: Scale, archs: list[str], clock: Clock, work: Path, root: Path) -> None:
        self.scale, self.pending, self.clock, self.work, self.root = scale, list(archs), clock, work, root
        self.entries: dict[str, Any] = {}  # arch → {"path", "seconds", "reused"}
        self.failed: dict[str, str] = {}  # arch → the status of the piece that could not build it
        self.statuses: list[str] = []
        self.device: dict[str, Any] | None = None

    def build_seconds(self, arch: str) -> int:
        return self.scale.build_seconds[arch] if arch in self.pending else 0

    def path(self, arch: str) -> str | None:
        """The model folder for ``arch``, building it (and its group) now if it has not been tried."""
        if arch in self.pending:
            flow = arch not in REFERENCE_ARCHS
            group = ([a for a in self.pending if (a not in REFERENCE_ARCHS) == flow] if self.scale.tiny else [arch])
            self.pending = [a for a in self.pending if a not in group]
            built = run_piece("models", {"models_dir": str(self.root), "tiny": self.scale.tiny,
                                         "device": self.scale.device, "archs": group},
                              self.work, "models-" + "-".join(group), self.clock.left())
            self.statuses.append(built["status"])
            self.device = self.device or built.get("device")
            self.entries.update(built.get("models", {}))
            self.failed.update({a: built["status"] for a in group if a not in built.get("models", {})})
            print(f"  models: {built['status']} "
                  + ", ".join(f"{a} {e['seconds']} s{' (reused)' if e['reused'] else ''}"
                              for a, e in built.get("models", {}).items()) + f"  [{self.clock.elapsed():.0f} s]",
                  flush=True)
        entry = self.entries.get(arch)
        return entry["path"] if entry else None

    @property
    def status(self) -> str:
        return next((s for s in self.statuses if s != "ok"), "ok")


def case_rows(scale: Scale, cases: list[Case], references: str, clock: Clock, work: Path,
              models: Models, datasets: dict[str, Path]) -> list[dict[str, Any]]:
    rows = []
    for case in cases:
        name = case.name(scale)
        row: dict[str, Any] = {"case": name, **asdict(case), "resolution": scale.resolution[case.arch],
                               "warmup": scale.warmup, "steps": scale.steps, "rank": RANK, "batch": 1}
        need = scale.seconds[case.arch] + models.build_seconds(case.arch)
        missing = case.missing_on(scale)
        if missing:
            row["status"] = f"skipped: {missing}"
        elif clock.left() < need:
            row["status"] = (f"skipped: time budget ({max(clock.left(), 0):.0f} s left of {clock.budget_s:.0f}, "
                             f"~{need} s needed, {clock.reserve_s:.0f} s kept for pytest)")
        elif (model_dir := models.path(case.arch)) is None:
            row["status"] = f"skipped: its model could not be built ({models.failed.get(case.arch, '')})"
        else:
            spec = {"arch": case.arch, "precision": case.precision, "checkpointing": case.checkpointing,
                    "optimizer": case.optimizer, "quantization": case.quantization, "swap": case.swap,
                    "text_quantization": case.text_quantization,
                    "resolution": scale.resolution[case.arch], "rank": RANK,
                    "warmup": scale.warmup, "steps": scale.steps, "device": scale.device,
                    "model_dir": model_dir, "dataset_dir": str(datasets[case.arch])}
            row["kamaal"] = run_piece("case", spec, work, name, clock.left())
            row["status"] = row["kamaal"]["status"]
            if case.flow:
                row["reference"] = {"status": "no reference loop: bench/reference_loop.py trains SD 1.x and SDXL"}
            elif references == "all" or case.with_reference:
                if clock.left() < need:
                    row["reference"] = {"status": "skipped: time budget"}
                else:
                    row["reference"] = run_piece("reference", spec, work, f"{name} reference", clock.left())
            _derive(row)
        print(f"  {summary_line(row)}  [{clock.elapsed():.0f} s]", flush=True)
        rows.append(row)
    return rows


def _derive(row: dict[str, Any]) -> None:
    """The numbers the table shows, from the two runs: speed ratio and the estimate's error."""
    kamaal, reference = row.get("kamaal", {}), row.get("reference", {})
    if kamaal.get("status") == "ok" and reference.get("status") == "ok":
        row["ratio"] = kamaal["it_per_s"] / reference["it_per_s"]
    if kamaal.get("status") == "ok" and kamaal.get("peak_allocated_bytes"):
        row["estimate_error_pct"] = 100 * (kamaal["estimate_bytes"] / kamaal["peak_allocated_bytes"] - 1)
    if kamaal.get("status") == "ok" and not kamaal.get("loss_finite"):
        row["status"] = "failed: a loss was not finite"


def gib(value: Any) -> str:
    return f"{value / 2**30:.2f}" if isinstance(value, (int, float)) and value else ""


def table_cells(row: dict[str, Any]) -> dict[str, str]:
    kamaal, reference = row.get("kamaal", {}), row.get("reference", {})
    ok = kamaal.get("status") == "ok"
    losses = [x for x in kamaal.get("losses", []) if x is not None]
    return {
        "case": row["case"],
        "it/s": f"{kamaal['it_per_s']:.2f}" if ok else "",
        "ref it/s": f"{reference['it_per_s']:.2f}" if reference.get("status") == "ok" else "",
        "ratio": f"{row['ratio']:.2f}" if "ratio" in row else
                 "no reference loop" if reference.get("status", "").startswith("no reference loop") else "",
        "peak GiB": gib(kamaal.get("peak_allocated_bytes")) if ok else "",
        "reserved GiB": gib(kamaal.get("peak_reserved_bytes")) if ok else "",
        "estimate GiB": gib(kamaal.get("estimate_bytes")) if ok else "",
        "est. error": f"{row['estimate_error_pct']:+.0f}%" if "estimate_error_pct" in row else "",
        "loss": f"{losses[0]:.3f}→{losses[-1]:.3f}" if ok and losses else "",
        "status": row["status"],
    }


def summary_line(row: dict[str, Any]) -> str:
    cells = table_cells(row)
    if not cells["it/s"]:
        return f"{cells['case']}: {cells['status']}"
    ratio = f", {cells['ratio']}" + ("× the reference" if "ratio" in row else "") if cells["ratio"] else ""
    return (f"{cells['case']}: {cells['it/s']} it/s{ratio}, peak {cells['peak GiB']} GiB (estimate "
            f"{cells['estimate GiB']}, {cells['est. error']}), loss {cells['loss']}: {cells['status']}")


def print_table(rows: list[dict[str, Any]]) -> None:
    cells = [table_cells(row) for row in rows]
    columns = list(cells[0]) if cells else []
    widths = {c: max(len(c), *(len(r[c]) for r in cells)) for c in columns}
    print("  ".join(f"{c:<{widths[c]}}" for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for row in cells:
        print("  ".join(f"{row[c]:<{widths[c]}}" for c in columns).rstrip())


def run_pytest(clock: Clock, work: Path) -> dict[str, Any]:
    """Step 4: ``pytest -m cuda`` with what is left of the budget."""
    left = clock.left(keep_reserve=False)
    if left < 30:
        return {"status": f"skipped: time budget ({max(left, 0):.0f} s left)"}
    log_path = work / "pytest-cuda.log"
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", *CUDA_TESTS]
    with log_path.open("w", encoding="utf-8") as log:
        try:
            code = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=left,
                                  check=False).returncode
        except subprocess.TimeoutExpired:
            return {"status": f"timed out after {left:.0f} s (budget)", "log": log_path.name}
    lines = [line for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    summary = lines[-1].strip("= ") if lines else ""
    return {"status": "ok" if code == 0 else f"failed: exit {code}", "summary": summary, "exit": code,
            "log": log_path.name}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="the same script on the CPU with tiny models")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="the whole check's time (default 480 s)")
    parser.add_argument("--only", nargs="*", default=[],
                        help="cases whose name holds one of these words or phrases: sdxl, fp16, 'sd15 512px bf16',"
                             " flux, sd3, zimage, qwenimage")
    parser.add_argument("--references", choices=("base", "all"), default="base",
                        help="reference loop for each architecture's first case (base) or for every case (all)")
    parser.add_argument("--keep-models", type=Path, help="build the models here and keep them (reused next time)")
    parser.add_argument("--no-pytest", action="store_true", help="leave out step 4 (pytest -m cuda)")
    parser.add_argument("--out", type=Path, help="JSON file to write (default bench/results/gpu-<time>.json)")
    args = parser.parse_args(argv)

    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print(f"gpu-check: no CUDA GPU here (torch {torch.__version__}), nothing to measure; "
              "--dry-run runs the same script on the CPU with tiny models.")
        return 0
    scale = DRY_RUN if args.dry_run else CUDA
    with_pytest = not (args.no_pytest or args.dry_run)
    clock = Clock(args.budget_s, PYTEST_RESERVE_S if with_pytest else 0)
    cases = [c for c in CASES if not args.only or any(f" {text} " in f" {c.name(scale)} " for text in args.only)]
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = args.out or RESULTS / f"gpu-{'dry-run-' if args.dry_run else ''}{stamp}.json"
    print(f"gpu-check{' (dry run: CPU, tiny models)' if args.dry_run else ''}: {len(cases)} cases, "
          f"budget {args.budget_s:.0f} s", flush=True)

    with tempfile.TemporaryDirectory(prefix="kamaal-gpu-check-") as tmp:
        work = Path(tmp)
        models_dir = args.keep_models or work / "models"
        models_dir.mkdir(parents=True, exist_ok=True)
        archs = list(dict.fromkeys(c.arch for c in cases if not c.missing_on(scale)))  # in case order
        models = Models(scale, archs, clock, work, models_dir)
        datasets = {arch: draw_shapes(work / f"images-{arch}", count=scale.warmup, size=scale.resolution[arch])
                    for arch in archs}
        for arch in archs:
            if family(arch).edit:
                with_controls(datasets[arch])
        rows = case_rows(scale, cases, args.references, clock, work, models, datasets)
        pytest_result = run_pytest(clock, work) if with_pytest else {"status": "skipped: dry run" if args.dry_run
                                                                     else "skipped: --no-pytest"}
        if with_pytest:
            print(f"  pytest -m cuda: {pytest_result['status']} {pytest_result.get('summary', '')}", flush=True)
        logs = _keep_logs(work, out)

    payload = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "dry_run": args.dry_run,
               "budget_s": args.budget_s, "elapsed_s": round(clock.elapsed(), 1),
               "machine": {"platform": platform.platform(), "python": platform.python_version(),
                           "torch": str(torch.__version__), "cpus": os.cpu_count(), "device": models.device},
               "models": models.entries, "models_status": models.status,
               "rows": rows, "pytest": pytest_result, "logs": logs}
    print()
    print_table(rows)
    device = models.device or {}
    print(f"\n{device.get('name', scale.device)}, torch {torch.__version__}; {clock.elapsed():.0f} s of "
          f"{args.budget_s:.0f}; pytest -m cuda: {pytest_result['status']} {pytest_result.get('summary', '')}")
    write_json(out, payload)
    print(f"written to {out}")
    return 0


def _keep_logs(work: Path, out: Path) -> str:
    """The pieces' logs beside the JSON (``gpu-….logs/``): the temporary folder is about to go."""
    import shutil

    folder = out.with_suffix(".logs")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    for log in work.glob("*.log"):
        shutil.copy2(log, folder / log.name)
    return str(folder)


if __name__ == "__main__":
    sys.exit(main())
