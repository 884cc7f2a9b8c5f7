"""LoRA on an SD1.5-architecture UNet at 512 px, batch 1, on CUDA: it/s and peak VRAM, with and without
gradient checkpointing.  Random weights from ``resources/model_configs/sd15/unet`` (nothing downloaded).

Only where CUDA exists; elsewhere it returns one ``skipped: no CUDA`` row.
"""

from __future__ import annotations

import time
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[1] / "resources" / "model_configs" / "sd15" / "unet"
WARMUP, STEPS = 3, 10


def _measure(checkpointing: bool) -> tuple[float, int]:
    import torch
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    torch.manual_seed(0)
    device = torch.device("cuda")
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(CONFIG_DIR))
    unet.requires_grad_(False)
    unet.to(device, dtype=torch.float16)
    unet.add_adapter(LoraConfig(r=16, lora_alpha=16, init_lora_weights="gaussian",
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    if checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    latents = torch.randn(1, 4, 64, 64, device=device, dtype=torch.float16)
    text = torch.randn(1, 77, 768, device=device, dtype=torch.float16)
    torch.cuda.reset_peak_memory_stats()

    def step() -> None:
        noise = torch.randn_like(latents)
        t = torch.randint(0, 1000, (1,), device=device)
        with torch.autocast("cuda", dtype=torch.float16):
            pred = unet(latents + noise, t, text).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise.float())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(WARMUP):
        step()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(STEPS):
        step()
    torch.cuda.synchronize()
    rate = STEPS / (time.perf_counter() - started)
    return rate, torch.cuda.max_memory_allocated()


def rows() -> list[dict[str, str]]:
    import torch

    if not torch.cuda.is_available():
        return [{"name": "gpu: SD1.5 UNet LoRA 512 px", "note": "skipped: no CUDA"}]
    plain_rate, plain_peak = _measure(False)
    torch.cuda.empty_cache()  # the first model is gone with its frame: start the second from a clean pool
    ckpt_rate, ckpt_peak = _measure(True)
    gpu = torch.cuda.get_device_name(0)
    return [
        {"name": "gpu: LoRA 512px b1, it/s (ckpt vs none)", "kamaal": f"{ckpt_rate:.2f} it/s",
         "reference": f"{plain_rate:.2f} it/s", "ratio": f"{ckpt_rate / plain_rate:.2f}",
         "note": f"{gpu}; fp16 UNet, fp32 LoRA; speed cost of gradient checkpointing"},
        {"name": "gpu: LoRA 512px b1, peak VRAM (ckpt vs none)", "kamaal": f"{ckpt_peak / 2**30:.2f} GiB",
         "reference": f"{plain_peak / 2**30:.2f} GiB", "ratio": f"{ckpt_peak / plain_peak:.2f}",
         "note": "lower is better"},
    ]
