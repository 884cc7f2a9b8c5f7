"""``make gpu-check``'s script in ``make test``: ``--dry-run`` runs every step of it on the CPU with tiny models
(models built the way the GPU run builds the real ones — SD 1.5, SDXL, SD 3.5, Flux, Chroma, Z-Image and Qwen-Image —,
Kamaal's trainer through Measure, the reference loop, the memory estimate), and without CUDA and without
``--dry-run`` it only says so."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tests.conftest import REPO


def run_script(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.gpu_check", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, check=False)


ARCHS = ("sd15", "sdxl", "sd3", "flux", "chroma", "zimage", "qwenimage", "flux2klein", "lumina2", "ernieimage",
         "kandinsky5", "qwenimage21", "krea2", "ideogram4", "hidream", "fluxkontext", "flux2kleinedit",
         "flux2devedit", "qwenimageedit")
FLOW = ("sd3", "flux", "chroma", "zimage", "qwenimage", "flux2klein", "lumina2", "ernieimage", "kandinsky5",
        "qwenimage21", "krea2", "ideogram4", "hidream", "fluxkontext", "flux2kleinedit", "flux2devedit",
        "qwenimageedit")
# Trained as their presets train them: with gradient checkpointing only.
PRESET_ONLY = ("chroma", "zimage", "qwenimage", "flux2klein", "ernieimage", "kandinsky5", "qwenimage21", "krea2",
               "ideogram4", "hidream", "fluxkontext", "flux2kleinedit", "flux2devedit", "qwenimageedit")


@pytest.mark.slow  # about 100 s on 2 cores: a short process per case
@pytest.mark.timeout(1000)  # the suite's 300 s is too close when the machine's cores are busy
def test_the_dry_run_trains_every_case_the_cpu_can_and_says_why_it_skips_the_others(tmp_path):
    out = tmp_path / "gpu-dry-run-20260101T000000Z.json"
    models = tmp_path / "models"
    # A budget above the GPU run's 480 s: every family adds a case, and a busy CPU runs them slower than planned.
    done = run_script("--dry-run", "--budget-s", "900", "--keep-models", str(models), "--out", str(out),
                      timeout=960)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["dry_run"] and result["models_status"] == "ok"
    assert {arch for arch, model in result["models"].items() if not model["reused"]} == set(ARCHS)
    rows = {row["case"]: row for row in result["rows"]}
    # The SD cases first, then the flow families' (a short budget keeps the SD paths).
    from bench.gpu_check import CASES

    flow_order = [case.arch for case in CASES if case.arch in FLOW]
    assert [row["arch"] for row in result["rows"]][-len(flow_order):] == flow_order
    # Flux as the presets train it: nf4 (16/12 GB) and fp8 (24 GB) bases, and block swap on top of nf4; Z-Image's
    # bf16 (24 GB) and fp8 (16 GB); Qwen-Image's nf4 (24 GB) and its 16 GB preset's nf4, fp8 Qwen2.5-VL and swap;
    # Flux.2 klein's nf4 (12 GB).
    for name in ("flux 64px bf16 ckpt adamw nf4", "flux 64px bf16 ckpt adamw fp8",
                 "flux 64px bf16 ckpt adamw nf4 swap20", "chroma 64px bf16 ckpt adamw fp8",
                 "zimage 64px bf16 ckpt adamw",
                 "zimage 64px bf16 ckpt adamw fp8", "qwenimage 64px bf16 ckpt adamw nf4",
                 "qwenimage 64px bf16 ckpt adamw nf4 te-fp8 swap20", "flux2klein 64px bf16 ckpt adamw nf4",
                 "ernieimage 64px bf16 ckpt adamw nf4", "kandinsky5 64px bf16 ckpt adamw",
                 "qwenimage21 64px bf16 ckpt adamw fp8 te-fp8",
                 "krea2 64px bf16 ckpt adamw nf4",
                 "ideogram4 64px bf16 ckpt adamw nf4",
                 "hidream 64px bf16 ckpt adamw nf4 te-nf4 swap16",
                 "fluxkontext 64px bf16 ckpt adamw nf4", "flux2kleinedit 64px bf16 ckpt adamw nf4",
                 "flux2devedit 64px bf16 ckpt adamw nf4 te-nf4 swap33",
                 "qwenimageedit 64px bf16 ckpt adamw nf4 te-fp8 swap50"):
        assert rows[name]["status"] == "ok", rows[name]
    trained = [row for row in rows.values() if row["status"] == "ok"]
    # bf16 with and without gradient checkpointing, on every architecture but those trained only as their
    # presets train them; fp16 and 8-bit AdamW need CUDA.
    assert {(row["arch"], row["checkpointing"]) for row in trained} == {
        (a, c) for a in ARCHS for c in (False, True) if c or a not in PRESET_ONLY}
    for row in trained:
        kamaal = row["kamaal"]
        assert kamaal["device"] == "cpu" and kamaal["memory_kind"] == "rss" and kamaal["tf32"] is False
        assert kamaal["loss_finite"] and len(kamaal["losses"]) == row["warmup"] + row["steps"]
        assert all(math.isfinite(x) for x in kamaal["losses"])
        assert kamaal["it_per_s"] > 0 and kamaal["peak_allocated_bytes"] > 0 and kamaal["estimate_bytes"] > 0
        assert row["estimate_error_pct"] == pytest.approx(
            100 * (kamaal["estimate_bytes"] / kamaal["peak_allocated_bytes"] - 1))
    for arch in ("sd15", "sdxl"):  # each architecture's first case has the reference loop beside it
        first = rows[f"{arch} 64px bf16 adamw"]
        assert first["reference"]["status"] == "ok" and first["reference"]["it_per_s"] > 0
        assert first["ratio"] == pytest.approx(first["kamaal"]["it_per_s"] / first["reference"]["it_per_s"])
    for row in trained:  # the flow families have no reference loop, and say so where the ratio would be
        if row["arch"] in FLOW:
            assert "ratio" not in row and row["reference"]["status"].startswith("no reference loop")
    # The flow folders come from the real-size builder (fed the tiny model's configs): one T5, hard-linked into
    # each (at real size 19 GB on disk once, not three times).
    t5_files = [models / "sd3" / "text_encoder_3" / "model.safetensors", models / "flux" / "text_encoder_2" /
                "model.safetensors", models / "chroma" / "text_encoder" / "model.safetensors"]
    assert len({file.stat().st_ino for file in t5_files}) == 1
    assert {result["models"][arch]["path"] for arch in ARCHS} == {str(models / arch) for arch in ARCHS}
    skipped = {name: row["status"] for name, row in rows.items() if row["status"] != "ok"}
    assert set(skipped) == {f"{arch} 64px {what}" for arch in ("sd15", "sdxl")
                            for what in ("fp16 adamw", "bf16 adamw8bit")}
    assert all(status.startswith("skipped: needs CUDA") for status in skipped.values())
    assert result["pytest"]["status"] == "skipped: dry run"
    assert "ratio" in done.stdout and "est. error" in done.stdout  # the table
    assert "flux 64px bf16 ckpt adamw" in done.stdout and "no reference loop" in done.stdout

    # make bench shows the newest real check's rows (a dry run's file never counts as one).
    from bench.bench_gpu import rows as bench_rows

    assert bench_rows(tmp_path)[0]["note"].startswith("skipped: no bench/results/gpu-*.json")
    out.rename(tmp_path / "gpu-20260101T000000Z.json")
    shown = {row["name"]: row for row in bench_rows(tmp_path)}
    first = shown["gpu: sd15 64px bf16 adamw, it/s"]
    assert first["ratio"] == f"{rows['sd15 64px bf16 adamw']['ratio']:.2f}" and "estimate" in first["note"]
    assert shown["gpu: sd15 64px fp16 adamw"]["note"].startswith("skipped: needs CUDA")


def test_a_budget_too_short_skips_cases_saying_so(tmp_path):
    """The budget is honoured: what cannot fit is a row that says why, not an overrun."""
    out = tmp_path / "short.json"
    done = run_script("--dry-run", "--budget-s", "1", "--only", "sd15 64px bf16 adamw", "--out", str(out),
                      timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text(encoding="utf-8"))
    rows = result["rows"]
    assert [row["case"] for row in rows] == ["sd15 64px bf16 adamw"]
    assert rows[0]["status"].startswith("skipped: time budget") and "kamaal" not in rows[0]
    assert result["models"] == {}  # models are built when their first case runs: none here


def test_a_case_too_big_for_the_lent_machine_is_skipped_there_saying_why_and_trained_in_the_dry_run():
    """Flux.2 dev edit's random full-size folder would not fit the lent machine's disk: on CUDA its row says so
    before anything is built; the dry run trains it (``--only flux2devedit``)."""
    from bench.gpu_check import CASES, CUDA, DRY_RUN

    (case,) = [case for case in CASES if case.arch == "flux2devedit"]
    assert "does not fit its 64 GB disk" in (case.missing_on(CUDA) or "")
    assert case.missing_on(DRY_RUN) is None


def test_without_cuda_it_says_so_in_one_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the check would run")
    done = run_script(timeout=60)
    assert done.returncode == 0
    assert done.stdout.strip().count("\n") == 0 and "no CUDA GPU here" in done.stdout


def test_the_real_size_flow_configs_have_the_released_models_parameter_counts():
    """What the GPU run builds for SD 3.5 Medium and Flux.1-dev (``gpu_cases.REAL_SIZE``), counted on the meta
    device: Flux's parts and every SD 3.5 encoder and VAE match the registry's reference counts (the released
    checkpoints'); SD 3.5 Medium's transformer is pinned at what its config gives, 2.24 B (the registry's figure
    is Large's; not compared with the released Medium file here)."""
    import diffusers
    import torch
    import transformers

    from bench.gpu_cases import REAL_SIZE
    from trainer import families

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    for arch, spec in REAL_SIZE.items():
        family = families.family(arch)
        with torch.device("meta"):
            counts = {family.denoiser: count(getattr(diffusers, spec["denoiser"][0])(**spec["denoiser"][1])),
                      "vae": count(diffusers.AutoencoderKL(**spec["vae"]))}
            for encoder, config in zip(family.text_encoders, spec["encoders"], strict=True):
                config_class = transformers.T5Config if encoder.tokenizer_kind == "t5" else transformers.CLIPTextConfig
                counts[encoder.component] = count(getattr(transformers, encoder.transformers_class)(
                    config_class(**config)))
        expected = dict(family.memory.reference_parameters)
        if arch == "sd3":
            expected["transformer"] = 2_243_171_520  # SD 3.5 Medium, from its config
        assert counts == expected, arch
