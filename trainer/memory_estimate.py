"""How much memory a config needs to train: a pure function of the config and the model's size.

Light (standard library + config): the GUI shows the estimate beside the hyperparameters and
updates it on every edit.  It is an *estimate*; the **Measure** task (``trainer/tasks/measure.py``)
runs real steps and reports the truth.

The formula, in bytes, for one training process::

    weights      Σ component parameters × bytes per weight
                   (fp16/bf16 = 2 under mixed precision on CUDA, else 4; the VAE is always fp32;
                    full and frozen-layer runs keep the whole UNet in fp32 — see architecture.md;
                    a quantized base: the family's quantizable share of the denoiser at the kind's
                    bytes per weight — nf4 ≈ 0.52, int8/fp8 1 — the rest as above;
                    block swap: the swapped share of the blocks (N / the family's block count) is
                    not counted, but for the one block on the GPU while it runs;
                    text encoders off the GPU: not counted while training, but the captions are
                    encoded first with them alone on the GPU, so the peak is at least their weights;
                    quantized text encoders: their quantizable share at the kind's bytes, as the base)
    trainable    LoRA: rank × per-rank parameters of the architecture × (target modules / 4)
                   (+ the text encoders' per-rank count when they are trained) — kept in fp32;
                 frozen: the counted trainable parameters (the block tree) or, uncounted, ¼ of the UNet;
                 DreamBooth full UNet: the whole UNet
    gradients    trainable × 4
    optimizer    trainable × 8 (AdamW: two fp32 moments) or × 2 (8-bit AdamW)
    activations  batch × latent pixels ((resolution / 8)²) × bytes per latent pixel of the architecture
                   × (UNet parameters / reference parameters)^½   (activations grow with width, not width²)
                   × 2 for fp32 activations × 0.2 with gradient checkpointing
    overhead     CPU: the resident process (Python, torch, libraries), about 0.4 GB; CUDA: none
                   (CUDA reports allocated memory; the driver's context, ~0.3–0.5 GB, is on top).

Assumptions: PyTorch's scaled-dot-product attention (no n² attention matrix); the text encoders and
VAE stay resident (cached latents or not); per-latent-pixel constants are fitted to commonly reported
numbers (SD 1.5 LoRA, 512 px, batch 1, fp16: ~3.5 GB of activations; SDXL, 1024 px: ~16 GB) and
should be read as ±30 %.  The toy network is tiny: the overhead dominates.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainer import families
from trainer.config import Config

GB = 1024**3
MB = 1024**2

# Each family's constants (reference parameter counts by component, LoRA parameters per rank, activation
# bytes per latent pixel) are declared by the family: trainer/families, ``Family.memory``.
REFERENCE_PARAMETERS: dict[str, dict[str, int]] = {
    name: f.memory.reference_parameters for name, f in families.FAMILIES.items()}
# Bytes per weight of a quantized base, scales included (nf4: 4 bits + one absmax per 64 weights, itself
# quantized to 8 bits per 256 blocks: 0.5 + ~0.016; int8/fp8: 1 + one scale per row, negligible).
QUANTIZED_BYTES: dict[str, float] = {"nf4": 0.5157, "int8": 1.0, "fp8": 1.0}
CHECKPOINTING_FACTOR = 0.2
CPU_PROCESS_OVERHEAD = 400 * MB
FROZEN_SHARE_UNCOUNTED = 0.25


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    gradients: int
    optimizer: int
    activations: int
    overhead: int
    trainable_parameters: int
    device: str  # "cuda" or "cpu"
    encoding: int = 0  # the text encoders alone on the GPU while the captions are encoded (when they leave it)

    @property
    def total(self) -> int:
        training = self.weights + self.gradients + self.optimizer + self.activations + self.overhead
        return max(training, self.encoding + self.overhead)

    def parts(self) -> dict[str, int]:
        return {"weights": self.weights, "gradients": self.gradients, "optimizer": self.optimizer,
                "activations": self.activations, "overhead": self.overhead}


def estimate_memory(config: Config, device: str = "cuda", parameters: dict[str, int] | None = None,
                    trainable_parameters: int | None = None) -> MemoryEstimate:
    """Peak memory of training ``config`` on ``device`` ("cuda" or "cpu").

    ``parameters`` are the model's counts by component (from the block tree of the real model);
    without them the reference model of the architecture is assumed.  ``trainable_parameters``
    overrides the trainable count (a frozen-layer run whose blocks were counted).
    """
    architecture = config.model.architecture
    facts = families.family(architecture).memory
    counts = dict(parameters or facts.reference_parameters)
    overhead = CPU_PROCESS_OVERHEAD if device == "cpu" else 0
    if families.family(architecture).is_toy:
        total = sum(counts.values())
        trainable = trainable_parameters if trainable_parameters is not None else total
        return MemoryEstimate(weights=total * 4, gradients=trainable * 4, optimizer=trainable * 8,
                              activations=config.training.batch_size * 101 * 4 * 4, overhead=overhead,
                              trainable_parameters=trainable, device=device)

    mixed = device == "cuda" and config.model.precision != "fp32"
    weight_bytes = 2 if mixed else 4
    denoiser = families.family(architecture).denoiser  # the UNet, or a transformer family's transformer
    unet = counts.get(denoiser, 0)
    text = sum(n for name, n in counts.items() if name.startswith("text_encoder"))
    reference = facts.reference_parameters
    vae = counts.get("vae", int(unet * reference["vae"] / reference[denoiser]))  # the block tree has no VAE
    full_unet = config.mode == "frozen" or (config.mode == "dreambooth" and config.dreambooth.train_full_unet)
    quantization = config.model.base_quantization if not full_unet else "none"
    if quantization != "none":
        share = facts.quantizable_share
        unet_bytes = unet * (share * QUANTIZED_BYTES[quantization] + (1 - share) * weight_bytes)
    else:
        unet_bytes = unet * (4 if full_unet else weight_bytes)
    # Sampling-only denoisers (Ideogram 4's unconditional transformer): frozen, stored as the base's frozen weights.
    sampling_only = sum(counts.get(name, 0) for name in families.family(architecture).frozen_components)
    if config.model.base_quantization != "none":
        share = facts.quantizable_share
        sampling_only_bytes = sampling_only * (share * QUANTIZED_BYTES[config.model.base_quantization]
                                               + (1 - share) * weight_bytes)
    else:
        sampling_only_bytes = sampling_only * weight_bytes
    swapped = min(config.model.blocks_to_swap, facts.block_count)
    if swapped and facts.block_count:  # the swapped blocks leave the GPU but one (the block running)
        unet_bytes *= 1 - (swapped - 1) / facts.block_count
    text_off = device == "cuda" and text_encoders_leave_gpu(config, device)
    text_quantization = config.model.text_encoder_quantization
    if text_quantization != "none":
        share = facts.text_quantizable_share
        text_bytes = text * (share * QUANTIZED_BYTES[text_quantization] + (1 - share) * weight_bytes)
    else:
        text_bytes = text * weight_bytes
    encoding = text_bytes if text_off else 0
    weights = unet_bytes + sampling_only_bytes + (0 if text_off else text_bytes) + vae * 4

    if trainable_parameters is not None:
        trainable = trainable_parameters
    elif config.mode == "frozen":
        trainable = int(unet * FROZEN_SHARE_UNCOUNTED)
    elif full_unet:
        trainable = unet
    elif config.mode == "embedding":  # a new word's vectors only (the widest text encoders: 2048 wide together)
        trainable = config.embedding.vectors * 2048
    else:
        scale = _size_scale(architecture, unet)
        per_rank = facts.lora_per_rank * len(config.lora.target_modules) / 4
        if config.lora.train_text_encoder:
            per_rank += facts.text_lora_per_rank
        trainable = int(config.lora.rank * per_rank * scale)  # LoRA grows with width
        weights += trainable * 4  # the adapters themselves, fp32
    optimizer_bytes = 2 if config.training.optimizer == "adamw8bit" else 8

    resolution = max([config.dataset.resolution] + [c.resolution for c in config.concepts])  # the largest batch
    latent_pixels = (resolution // 8) ** 2
    per_pixel = facts.activation_bytes_per_latent_pixel * _size_scale(architecture, unet)
    activations = config.training.batch_size * latent_pixels * per_pixel * (1 if mixed else 2)
    if config.training.gradient_checkpointing:
        activations *= CHECKPOINTING_FACTOR
    if config.mode == "dreambooth" and config.dreambooth.prior_preservation:
        activations *= 2  # each step also runs a class-image batch
    return MemoryEstimate(weights=int(weights), gradients=trainable * 4, optimizer=trainable * optimizer_bytes,
                          activations=int(activations), overhead=overhead, trainable_parameters=trainable,
                          device=device, encoding=int(encoding))


def text_encoders_leave_gpu(config: Config, device: str) -> bool:
    """``model.text_encoder_device`` resolved: do the text encoders wait off the GPU once the captions are
    encoded?  auto: on CUDA, when the captions are cached and no text encoder is trained."""
    trains_text = config.trains_text()
    cached = config.dataset.cache_text in ("on", "disk") or (
        config.dataset.cache_text == "auto" and not trains_text and not config.caption_variation().varies_text)
    if config.model.text_encoder_device == "auto":
        return device == "cuda" and cached and not trains_text
    return config.model.text_encoder_device == "cpu"


def _size_scale(architecture: str, unet_parameters: int) -> float:
    """How much wider than the reference UNet this one is: (parameters / reference)^½."""
    model = families.family(architecture)
    reference = model.memory.reference_parameters[model.denoiser]
    return (max(unet_parameters, 1) / reference) ** 0.5


def parameters_from_blocks(blocks: dict[str, list[dict]]) -> dict[str, int]:
    """Component totals from an ``inspect-blocks`` result (top-level blocks only, so nothing counts twice)."""
    return {component: sum(row["parameters"] for row in rows if "." not in row["block"])
            for component, rows in blocks.items()}

