"""The one typed training config: declared once, used by the GUI, the CLI, presets and run folders.

Light on purpose (pydantic and the standard library only) so that the GUI process can
import it without pulling in torch.  Everything a user can set lives here, with a
description, a default and a range; the hyperparameter form, tooltips and validation
messages are all derived from these declarations.

Bad input never produces a traceback: every failure is a :class:`ConfigError` whose
message names the field, e.g. ``training.steps: must be ≥ 1, got 0``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trainer import families
from trainer.fsutil import atomic_write_text
from trainer.sample_prompt import SAMPLER_NAMES, parse_sample_prompt

if TYPE_CHECKING:
    from trainer.dataset.caption_ops import CaptionVariation

SCHEMA_VERSION = 1
# The largest seed: torch.Generator.manual_seed takes up to 2^64 − 1, TOML and JSON readers up to 2^63 − 1.
MAX_SEED = 2**63 - 1
# How deep tables and lists may nest: a config has three levels (concepts[0].path); a file nested hundreds
# deep is refused before anything walks it (recursion in the TOML reader, the copy, the messages).
MAX_NESTING = 16

Mode = Literal["toy", "frozen", "lora", "dreambooth", "embedding"]
# The model families of the registry (trainer/families), in the order people see them.
Architecture = Literal[families.NAMES]  # type: ignore[valid-type]
Sampler = Literal[SAMPLER_NAMES]  # type: ignore[valid-type]

# Which training modes each model architecture supports, as its family declares.
MODES_BY_ARCHITECTURE: dict[str, tuple[str, ...]] = {name: f.modes for name, f in families.FAMILIES.items()}

# Which config sections matter for each mode (the GUI shows only these).
SECTIONS_BY_MODE: dict[str, tuple[str, ...]] = {
    "toy": ("training", "toy", "output"),
    "frozen": ("model", "dataset", "training", "frozen", "toy", "sampling", "output"),
    "lora": ("model", "dataset", "training", "lora", "embedding", "toy", "sampling", "output"),  # toy: its task
    "dreambooth": ("model", "dataset", "training", "dreambooth", "lora", "embedding", "sampling", "output"),
    "embedding": ("model", "dataset", "training", "embedding", "sampling", "output"),
}


class ConfigError(ValueError):
    """A config that cannot be used.  ``str(error)`` is a message for people, one line per problem."""

    def __init__(self, problems: Iterable[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + "; ".join(self.problems) if len(self.problems) == 1
                         else prefix + "invalid config:\n  " + "\n  ".join(self.problems))

    def by_field(self) -> dict[str, str]:
        """``{"training.steps": "must be ≥ 1, got 0", ...}``; problems without a field go under ``""``."""
        fields: dict[str, str] = {}
        for problem in self.problems:
            name, sep, message = problem.partition(": ")
            if not sep or " " in name:
                name, message = "", problem
            fields[name] = f"{fields[name]}; {message}" if name in fields else message
        return fields


def _path_field(default: str, description: str) -> Any:
    """A string field holding a file system path; relative paths resolve against the config file."""
    return Field(default, description=description, json_schema_extra={"path": True})


# Marks a field that only Stable Diffusion training reads (the toy network ignores it; the GUI hides it).
DIFFUSION_ONLY = {"diffusion_only": True}


class Section(BaseModel):
    """Base of every config table: unknown keys refused, no silent type coercion, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class ModelConfig(Section):
    architecture: Architecture = Field(
        "toy", description="Model family: " + ", ".join(f.display_name for f in families.FAMILIES.values()) + ".")
    path: str = _path_field(
        "", "Base weights to start from: a diffusers folder or a .safetensors file "
            "(for the toy network, a toy.safetensors from an earlier run). Empty = fresh weights (toy only).")
    text_encoder_files: list[str] = Field(
        default_factory=list, json_schema_extra={"path": True, **DIFFUSION_ONLY},
        description="For a single-file base whose text encoders are files of their own (Flux: clip_l and t5xxl; "
                    "SD 3.5: clip_l, clip_g and, optionally, t5xxl; Z-Image: its Qwen3 file; Qwen-Image: "
                    "qwen_2.5_vl_7b; Flux.2 dev: mistral_3_small_flux2 and FLUX.2-dev's tokenizer folder — "
                    ".safetensors, in any order); empty = look beside it as ComfyUI keeps them (models/clip, "
                    "models/text_encoders).")
    vae_file: str = Field(
        "", json_schema_extra={"path": True, **DIFFUSION_ONLY},
        description="For a single-file base without its VAE: Flux and Z-Image (ae.safetensors), Qwen-Image "
                    "(qwen_image_vae.safetensors) — empty = look in models/vae beside it —, or an SD 3.5 file that "
                    "holds none.")
    tokenizer_folder: str = Field(
        "", json_schema_extra={"path": True, **DIFFUSION_ONLY},
        description="For a single-file base whose tokenizer Kamaal cannot ship (Lumina 2's Gemma, Flux.2 dev's and "
                    "ERNIE-Image's Mistral Tekken): the folder that holds it, e.g. the tokenizer folder of "
                    "Alpha-VLLM/Lumina-Image-2.0, black-forest-labs/FLUX.2-dev or baidu/ERNIE-Image (tokenizer.json, "
                    "tokenizer_config.json); other families ignore it.")
    prediction_type: Literal["auto", "epsilon", "v_prediction"] = Field(
        "auto", json_schema_extra=DIFFUSION_ONLY,
        description="What the UNet predicts; auto = from the model (SD 2.x 768 models use v_prediction).")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", json_schema_extra=DIFFUSION_ONLY,
        description="Mixed precision: auto = bf16 on GPUs that support it, else fp16 on CUDA, fp32 on CPU.")
    base_quantization: Literal["none", "fp8", "int8", "nf4"] = Field(
        "none", json_schema_extra=DIFFUSION_ONLY,
        description="Store the frozen base model's block weights in fewer bits while LoRA trains (LoRA and "
                    "DreamBooth-LoRA runs): fp8 or int8 (torchao) half of bf16's memory, nf4 (bitsandbytes, as "
                    "QLoRA) about a quarter, at a small cost in fidelity. The LoRA itself trains in full precision.")
    blocks_to_swap: int = Field(
        0, ge=0, le=1000, json_schema_extra=DIFFUSION_ONLY,
        description="How many of the denoiser's blocks keep their frozen weights in the computer's memory and come "
                    "to the GPU only while they run (Flux.1 has 57, SD 3.5 Large 38): for cards too small even "
                    "with an nf4 base; slower. Needs gradient checkpointing. 0 = none.")
    text_encoder_quantization: Literal["none", "fp8", "int8", "nf4"] = Field(
        "none", json_schema_extra=DIFFUSION_ONLY,
        description="Store the text encoders' layer weights in fewer bits while they encode the captions and "
                    "prompts (fp8/int8 torchao, nf4 bitsandbytes): for an encoder too large for the card (Qwen-Image's "
                    "Qwen2.5-VL, 15.5 GB in bf16, 9.4 GB in fp8); the conditioning moves slightly. Families whose "
                    "encoders declare their blocks only; not with lora.train_text_encoder.")
    text_encoder_device: Literal["auto", "gpu", "cpu"] = Field(
        "auto", json_schema_extra=DIFFUSION_ONLY,
        description="Where the text encoders wait once every caption is encoded: auto = in the computer's memory "
                    "(off the GPU) when captions are cached and the encoders are not trained; gpu = stay on the "
                    "GPU; cpu = move off the GPU (needs dataset.cache_text).")


class DatasetConfig(Section):
    """The dataset settings, and the project's first concept (its folder, token, template, repeats)."""

    name: str = Field("", max_length=100,
                      description="Name of the first concept on the Dataset page; empty = the folder's name.")
    path: str = _path_field("", "Folder of training images, each with a same-named .txt caption beside it.")
    caption_extension: str = Field(".txt", description="File extension of the caption files.",
                                   pattern=r"^\.[A-Za-z0-9_]+$")
    instance_token: str = Field("sks", description="Rare token that names your subject in captions.")
    caption_template: str = Field(
        "a photo of {token}", description="Caption used where an image has none; {token} becomes the instance token.")
    resolution: int = Field(512, ge=64, le=4096, multiple_of=8,
                            description="Training resolution in pixels (side of the square bucket).")
    repeats: int = Field(1, ge=1, le=1000, description="How many times each image is seen per epoch.")
    bucketing: bool = Field(True, description="Group images by aspect ratio instead of cropping all to squares.")
    min_bucket_side: int = Field(256, ge=64, le=4096, multiple_of=64, description="Smallest bucket side in pixels.")
    max_bucket_side: int = Field(1024, ge=64, le=8192, multiple_of=64, description="Largest bucket side in pixels.")
    no_upscale: bool = Field(False, description="Never enlarge a small image to fit a bucket.")
    crop: Literal["center", "random"] = Field("center", description="Where to crop an image that overhangs its bucket.")
    flip: bool = Field(False,
                       description="Randomly mirror images left-right (not for text or asymmetric subjects).")
    caption_dropout: float = Field(0.0, ge=0, le=0.5,
                                   description="Share of draws whose caption is left empty (the model learns the "
                                               "image unconditioned; 0.05–0.1 is usual).")
    tag_dropout: float = Field(0.0, ge=0, le=0.9,
                               description="Chance each tag (after the kept ones) is left out of a draw's caption.")
    shuffle_tags: bool = Field(False, description="Shuffle the tags (after the kept ones) every time an image is "
                                                  "drawn, so no tag order is learned.")
    keep_tags: int = Field(0, ge=0, le=100, description="How many first tags stay in place and are never dropped "
                                                        "(e.g. 1 to keep the instance token first).")
    tag_separator: str = Field(",", min_length=1, max_length=8,
                               description="What separates tags in a caption (a comma for booru-style tags).")
    cache_latents: Literal["auto", "memory", "disk", "off"] = Field(
        "auto", description="Encode images with the VAE once and reuse; auto = memory when crop and flip are fixed.")
    cache_text: Literal["auto", "on", "disk", "off"] = Field(
        "auto", description="Encode captions once; auto = on (in memory) unless the text encoder is trained; disk "
                            "= in the run folder, read back each step and kept for a resume (T5's embeddings are "
                            "large and slow to make).")
    masked_loss: bool = Field(False, description="Weight the loss by each image's mask, NAME.mask.png beside it "
                                                 "(white = train, black = ignore; painted on the Dataset page). "
                                                 "Images without a mask train everywhere.")
    unmasked_weight: float = Field(0.0, ge=0, le=1, description="With masked loss: the least weight any pixel "
                                                                "gets, so the background still teaches a little "
                                                                "(OneTrainer's unmasked weight; 0 = none).")


class TrainingConfig(Section):
    steps: int = Field(1000, ge=1, le=10_000_000, description="Number of optimizer steps to train.")
    batch_size: int = Field(1, ge=1, le=4096, description="Samples per step.")
    learning_rate: float = Field(1e-4, gt=0, le=10.0, description="Peak learning rate of the optimizer.")
    scheduler: Literal["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts",
                       "polynomial"] = Field(
        "constant", description="How the learning rate changes after warm-up (diffusers' schedules): constant, "
                                "linear or cosine to 0, cosine with restarts (lr_cycles), polynomial (lr_power).")
    lr_cycles: int = Field(1, ge=1, le=1000, description="Hard restarts of the cosine_with_restarts schedule.")
    lr_power: float = Field(1.0, gt=0, le=10, description="Power of the polynomial schedule (1 = linear).")
    warmup_steps: int = Field(0, ge=0, description="Steps over which the learning rate rises linearly from 0.")
    weight_decay: float = Field(0.0, ge=0, le=1.0, description="AdamW weight decay.")
    optimizer: Literal["adamw", "adamw8bit", "prodigy", "adafactor", "lion", "came", "adamw_schedulefree"] = Field(
        "adamw", json_schema_extra=DIFFUSION_ONLY,
        description="AdamW; 8-bit AdamW (bitsandbytes, CUDA: less memory); Prodigy (sets its own step size: "
                    "learning rate 1.0); Adafactor or CAME (little optimizer memory); Lion (learning rate 3–10× "
                    "lower than AdamW's); schedule-free AdamW (no schedule; samples and saves its averaged weights).")
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024,
                                             json_schema_extra=DIFFUSION_ONLY,
                                             description="Add up gradients over N batches before each step.")
    gradient_checkpointing: bool = Field(False, json_schema_extra=DIFFUSION_ONLY,
                                         description="Recompute activations to save memory (slower).")
    torch_compile: bool = Field(
        False, json_schema_extra=DIFFUSION_ONLY,
        description="Compile the denoiser's training step with torch.compile: for GPUs (the first step waits "
                    "minutes while it compiles; previews stay uncompiled). On the CPU no gain was measured.")
    max_grad_norm: float = Field(1.0, ge=0, le=1000, json_schema_extra=DIFFUSION_ONLY,
                                 description="Clip gradients to this norm; 0 = no clipping.")
    min_snr_gamma: float = Field(0.0, ge=0, le=100, json_schema_extra=DIFFUSION_ONLY,
                                 description="Min-SNR loss weighting (5 is typical); 0 = off.")
    noise_offset: float = Field(0.0, ge=0, le=1, json_schema_extra=DIFFUSION_ONLY,
                                description="Noise offset (0.05–0.1 helps very dark/bright images).")
    debiased_estimation: bool = Field(
        False, json_schema_extra=DIFFUSION_ONLY,
        description="Debiased estimation loss weighting (Yu et al., 2024): each timestep's noise error weighted "
                    "by 1/√SNR, so the easy, nearly clean timesteps count less (v-prediction: the same weight on "
                    "its equivalent noise error, √SNR/(SNR + 1) on the v error; SNR capped at 1000 as kohya "
                    "does). With min-SNR γ, both weights apply. DDPM families (SD 1.x/2.x/SDXL) only.")
    timestep_min: int = Field(
        0, ge=0, le=999, json_schema_extra=DIFFUSION_ONLY,
        description="Lowest timestep trained, on the 0–1000 scale every family shares: SD 1.x/2.x/SDXL draw "
                    "their DDPM timestep t from [min, max); flow-matching families (SD 3.5, Flux, Z-Image, "
                    "Qwen-Image) draw their σ (timestep ÷ 1000, after the family's shift) from [min, max] ÷ 1000. "
                    "0 = from the cleanest.")
    timestep_max: int = Field(
        1000, ge=1, le=1000, json_schema_extra=DIFFUSION_ONLY,
        description="Highest timestep trained, on the same 0–1000 scale (1000 = up to pure noise); with "
                    "timestep_min it narrows training to the noise levels that carry what you teach (e.g. "
                    "0–500 for detail and texture, 500–1000 for composition).")
    multires_noise_iterations: int = Field(
        0, ge=0, le=20, json_schema_extra=DIFFUSION_ONLY,
        description="Multi-resolution (pyramid) noise: add this many levels of noise drawn at ever coarser "
                    "sizes (each 2–4× smaller) and scaled up, as kohya's multires noise does, so the model "
                    "also learns large areas of light and colour (6–10 is usual; 0 = off). SD 1.x/2.x/SDXL.")
    multires_noise_discount: float = Field(
        0.3, gt=0, le=1, json_schema_extra=DIFFUSION_ONLY,
        description="How much each coarser level of multires noise counts: level i is scaled by discount^i "
                    "(0.3 is usual; kohya's default 0.3).")
    zero_terminal_snr: bool = Field(
        False, json_schema_extra=DIFFUSION_ONLY,
        description="Rescale the noise schedule so its last timestep is pure noise (zero terminal SNR, Lin et "
                    "al., 2024): the model learns to draw from pure noise, so very dark and very bright images "
                    "come out. Needs v-prediction (model.prediction_type v_prediction or a v model); samples and "
                    "the saved model use the rescaled schedule with trailing timesteps. SD 1.x/2.x/SDXL.")
    ema_decay: float = Field(0.0, ge=0, lt=1, json_schema_extra=DIFFUSION_ONLY,
                             description="Keep an exponential moving average of the trained weights (0.999 is "
                                         "usual; 0 = off): samples use it, and its files are written beside the "
                                         "raw ones (output/ema).")
    ema_on_cpu: bool = Field(False, json_schema_extra=DIFFUSION_ONLY,
                             description="Keep the EMA in the computer's memory instead of the GPU's (slower).")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Random seed: same seed, same run.")
    log_every: int = Field(1, ge=1, description="Write metrics and send progress every N steps.")
    eval_every: int = Field(10, ge=1, description="Measure the held-out loss every N steps.")


class ToyConfig(Section):
    samples: int = Field(1024, ge=16, le=1_000_000, description="Size of the synthetic regression data set.")
    holdout_fraction: float = Field(0.2, gt=0, lt=0.9, description="Share of the data kept aside for held-out loss.")
    task_seed: int = Field(0, ge=0, le=2**32 - 1,
                           description="Seed of the synthetic task itself (a different seed is a different task).")
    shifted: bool = Field(False, description="Ask the task's question the other way round (target 1 − 2·y on the "
                                             "same inputs): new data for a network that learned the task, as in "
                                             "the guide's fine-tuning lesson.")
    noise: float = Field(0.02, ge=0, le=10.0, description="Standard deviation of the noise added to the targets.")
    weights_every: int = Field(10, ge=1,
                               description="Send every layer's weights and biases to the preview every N steps.")
    step_delay_ms: int = Field(0, ge=0, le=10_000,
                               description="Pause after each step so a person can watch the network learn (demo only).")


class FrozenConfig(Section):
    trainable: list[str] = Field(
        default_factory=lambda: ["output_layer"],
        description="Blocks left trainable; everything else is frozen. Names or glob patterns "
                    "(e.g. output_layer, up_blocks.3, *attn2*).")


class LoraConfig(Section):
    adapter: Literal["lora", "dora", "loha", "lokr"] = Field(
        "lora", description="The adapter: LoRA (a low-rank update); DoRA (LoRA plus a trained magnitude per output "
                            "channel: closer to full fine-tuning, a little slower); LoHa (the Hadamard product of "
                            "two, more expressive at the same size) or LoKr (a Kronecker product: very small "
                            "files), as LyCORIS makes them; LoHa and LoKr for Stable Diffusion 1.x/2.x/SDXL, "
                            "SD 3.5 and Flux.1.")
    rank: int = Field(16, ge=1, le=1024, description="LoRA rank: size of the low-rank update.")
    alpha: float = Field(16.0, gt=0, le=4096, description="LoRA alpha: the update is scaled by alpha / rank.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA path.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"],
        description="Module names in the UNet that get LoRA adapters.")
    train_text_encoder: bool = Field(False, description="Also train LoRA adapters on the text encoder(s).")


class DreamBoothConfig(Section):
    instance_prompt: str = Field("a photo of sks dog", description="Prompt naming your subject with the rare token.")
    class_prompt: str = Field("a photo of dog", description="Prompt for the subject's class, without the token.")
    class_dir: str = _path_field("", "Folder of class (regularization) images; missing ones are generated.")
    prior_preservation: bool = Field(True, description="Train on class images too, so the class is not forgotten.")
    prior_loss_weight: float = Field(1.0, ge=0, le=100, description="Weight of the class-image loss.")
    num_class_images: int = Field(100, ge=0, le=100_000, description="How many class images prior preservation uses.")
    train_full_unet: bool = Field(False,
                                  description="Train every UNet weight instead of a LoRA (needs much more memory).")


class EmbeddingConfig(Section):
    """Textual inversion: a new word whose embedding is trained (alone, or beside a LoRA: pivotal tuning)."""

    token: str = Field(
        "", max_length=60,
        description="The new word to train, as captions and prompts write it (e.g. <my-dog>); empty = none. "
                    "Textual inversion needs one; with LoRA it is trained beside the adapter (pivotal tuning).")

    @field_validator("token")
    @classmethod
    def _one_lower_case_word(cls, token: str) -> str:
        # CLIP's tokenizers lower-case prompts, so a word with capitals would never be found again in one.
        if any(c.isspace() or c == "," for c in token) or token != token.lower():
            raise ValueError(f"write the new word in lower case, without spaces or commas (e.g. <my-dog>), got "
                             f"{token!r}")
        return token
    init_text: str = Field("*", max_length=200,
                           description="Words whose embeddings the new word starts from (e.g. dog); their tokens "
                                       "are repeated to fill the vectors.")
    vectors: int = Field(1, ge=1, le=32, description="Vectors (tokens) the new word takes in a prompt; more learn "
                                                     "more, and leave less room in the 75-token prompt.")
    learning_rate: float = Field(0.0, ge=0, le=1,
                                 description="Learning rate of the new word's vectors; 0 = training.learning_rate. "
                                             "Textual inversion usually runs at 5e-3, pivotal tuning at 1e-3 to 5e-4.")


class ConceptConfig(Section):
    """One more concept: a folder of subject images with its own captions, repeats, resolution and
    (optionally) class set.  The first concept is ``dataset.*`` + ``dreambooth.class_*``; these are
    the ``[[concepts]]`` tables after it, trained together with it."""

    name: str = Field("", max_length=100, description="Name shown on the Dataset page; empty = the folder's name.")
    path: str = Field(min_length=1, json_schema_extra={"path": True},
                      description="Folder of this concept's images, each with a same-named caption beside it.")
    instance_token: str = Field("sks", description="Rare token that names this concept in captions.")
    caption_template: str = Field(
        "a photo of {token}", description="Caption used where an image has none; {token} becomes the instance token.")
    repeats: int = Field(1, ge=1, le=1000, description="How many times each image is seen per epoch.")
    resolution: int = Field(0, ge=0, le=4096, multiple_of=8,
                            description="Training resolution of this concept; 0 = dataset.resolution.")
    class_dir: str = Field("", json_schema_extra={"path": True},
                           description="Folder of this concept's class images (DreamBooth prior preservation); "
                                       "empty = no class set.  Missing ones are generated.")
    class_prompt: str = Field("", description="Prompt for this concept's class, without the token.")
    num_class_images: int = Field(100, ge=0, le=100_000, description="How many class images this concept uses.")


class SamplingConfig(Section):
    prompts: list[str] = Field(
        default_factory=list,
        description="Prompts drawn at every sampling point. A prompt may end in kohya's options for itself alone: "
                    "--n negative prompt, --l guidance scale, --s steps, --d seed(s), --w/--h size, --ss sampler.")

    @field_validator("prompts")
    @classmethod
    def _prompts_parse(cls, prompts: list[str]) -> list[str]:
        problems = []
        for index, line in enumerate(prompts):
            try:
                parse_sample_prompt(line)
            except ValueError as exc:
                problems.append(f"prompt {index + 1} ({line.strip()[:40]!r}): {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        return prompts
    negative_prompt: str = Field("", description="What the sample images should not show (for the families whose "
                                                 "previews guide with a negative prompt); a prompt's --n replaces it.")
    seeds: list[int] = Field(default_factory=lambda: [0],
                             description="Seeds for the sample images (fixed across steps).")

    @field_validator("seeds")
    @classmethod
    def _seeds_in_range(cls, seeds: list[int]) -> list[int]:
        # Checked here, not after training: a seed torch cannot take used to crash the final samples.
        for seed in seeds:
            if not 0 <= seed <= MAX_SEED:
                raise ValueError(f"each seed must be a whole number from 0 to 2^63 − 1 "
                                 f"({MAX_SEED}), got {seed}")
        return seeds
    every_n_steps: int = Field(0, ge=0, description="Draw samples every N steps; 0 = only at start and end.")
    at_start: bool = Field(True, description="Draw samples before training (step 0 = the base model).")
    inference_steps: int = Field(20, ge=1, le=1000, description="Denoising steps per sample image.")
    guidance_scale: float = Field(7.5, ge=0, le=50, description="Classifier-free guidance scale for samples.")
    sampler: Sampler = Field(
        "default", description="Scheduler the samples are drawn with (Stable Diffusion 1.x/2.x/SDXL); default = DDIM. "
                               "Flow-matching families draw with their model's own scheduler.")
    width: int = Field(0, ge=0, le=4096, multiple_of=8,
                       description="Sample width in pixels; 0 = the training resolution.")
    height: int = Field(0, ge=0, le=4096, multiple_of=8,
                        description="Sample height in pixels; 0 = the training resolution.")


class OutputConfig(Section):
    run_name: str = Field("run", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                          description="Name of the run; also the name of the exported files.")
    runs_dir: str = _path_field(
        "", "Folder where run folders are created; empty = ./runs (CLI) or the project's runs folder (app).")
    checkpoint_every: int = Field(0, ge=0,
                                  description="Save a resumable checkpoint every N steps; 0 = only at the end.")
    keep_checkpoints: int = Field(3, ge=1, le=1000, description="How many of the newest checkpoints to keep.")
    tensorboard: bool = Field(True, description="Also write TensorBoard event files (losses, learning rate, sample "
                                                "images) to the run's tensorboard folder.")


class Config(Section):
    """A complete training job."""

    schema_version: int = Field(SCHEMA_VERSION, description="Version of this file's layout.")
    mode: Mode = Field("toy",
                       description="What to train: the toy network, frozen-layer fine-tuning, LoRA, DreamBooth or "
                                   "a new word's embedding (textual inversion).")
    model: ModelConfig = Field(default_factory=ModelConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    toy: ToyConfig = Field(default_factory=ToyConfig)
    frozen: FrozenConfig = Field(default_factory=FrozenConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    dreambooth: DreamBoothConfig = Field(default_factory=DreamBoothConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    concepts: list[ConceptConfig] = Field(
        default_factory=list, description="Concepts trained together with the first one (dataset.*).")

    @model_validator(mode="before")
    @classmethod
    def _family_lora_targets(cls, data: Any) -> Any:
        """``lora.target_modules`` left out: the family's own (``Family.lora_target_modules``), else the default."""
        if not isinstance(data, dict) or not isinstance(data.get("model", {}), dict):
            return data
        architecture = data.get("model", {}).get("architecture")
        lora = data.get("lora", {})
        # Anything odd is left as it is, for the field checks to name.
        if (not isinstance(architecture, str) or architecture not in families.FAMILIES or not isinstance(lora, dict)
                or "target_modules" in lora):
            return data
        targets = families.family(architecture).lora_target_modules
        return data if targets is None else {**data, "lora": {**lora, "target_modules": list(targets)}}

    @model_validator(mode="after")
    def _check_combinations(self) -> Config:
        problems = []
        allowed = MODES_BY_ARCHITECTURE[self.model.architecture]
        if self.mode not in allowed:
            problems.append(f"mode: '{self.mode}' does not work with model.architecture "
                            f"'{self.model.architecture}' (choose one of {', '.join(allowed)})")
        if self.training.warmup_steps > self.training.steps:
            problems.append(f"training.warmup_steps: must be ≤ training.steps ({self.training.steps}), "
                            f"got {self.training.warmup_steps}")
        if self.mode == "frozen" and not self.frozen.trainable:
            problems.append("frozen.trainable: name at least one block to train in frozen mode")
        lora_base = self.trains_adapter()
        if self.model.base_quantization != "none" and not (lora_base or self.mode == "embedding"):
            problems.append(f"model.base_quantization: {self.model.base_quantization} stores frozen base weights; "
                            f"this {self.mode} run trains them (use none, or LoRA / DreamBooth without "
                            "train_full_unet)")
        model_family = families.family(self.model.architecture)
        encoders = model_family.text_encoders
        if lora_base and self.lora.train_text_encoder and encoders and not any(e.lora for e in encoders):
            labels = " and ".join(e.label for e in encoders)
            problems.append(f"lora.train_text_encoder: {model_family.display_name}'s {labels} "
                            f"{'takes' if len(encoders) == 1 else 'take'} no LoRA (the LoRA loaders of its pipeline "
                            "and ComfyUI apply the transformer's only); turn it off")
        if self.model.text_encoder_quantization != "none":
            if not any(e.blocks for e in encoders):
                able = ", ".join(f.display_name for f in families.FAMILIES.values()
                                 if any(e.blocks for e in f.text_encoders))
                problems.append(f"model.text_encoder_quantization: {model_family.display_name}'s text encoders keep "
                                f"their precision (choose none; quantized encoders: {able})")
            elif lora_base and self.lora.train_text_encoder:
                problems.append("model.text_encoder_quantization: a quantized text encoder cannot be trained "
                                "(turn off lora.train_text_encoder, or choose none)")
        lycoris = model_family.kohya is not None and model_family.kohya.lycoris_names is not None
        if lora_base and self.lora.adapter in ("loha", "lokr") and not lycoris:
            problems.append(f"lora.adapter: {self.lora.adapter} is written in the kohya/LyCORIS format that ComfyUI "
                            "reads for Stable Diffusion 1.x/2.x/SDXL, SD 3.5 and Flux.1 only; choose lora or dora for "
                            f"{model_family.display_name}")
        problems += _noise_problems(self, model_family)
        problems += _sampling_problems(self.sampling, model_family)
        if self.mode == "embedding" and not self.embedding.token:
            problems.append("embedding.token: textual inversion trains a new word; name it (e.g. <my-dog>)")
        if lora_base and self.embedding.token and "embedding" not in model_family.modes:
            problems.append(f"embedding.token: {model_family.display_name} trains no new words (textual inversion "
                            "is for the CLIP text encoders of Stable Diffusion 1.x/2.x/SDXL); leave it empty")
        if self.model.blocks_to_swap and not self.training.gradient_checkpointing:
            problems.append("model.blocks_to_swap: swapping blocks saves memory only with "
                            "training.gradient_checkpointing on (turn it on, or swap 0 blocks)")
        if self.dataset.cache_text in ("on", "disk") and self.trains_token():
            problems.append(f"dataset.cache_text: {self.dataset.cache_text} cannot cache captions while a new "
                            "word's embedding trains (choose auto or off)")
        if self.dataset.cache_text in ("on", "disk") and self.caption_variation().varies_text:
            problems.append(f"dataset.cache_text: {self.dataset.cache_text} cannot cache captions whose tags are "
                            "shuffled or dropped every draw (choose auto or off)")
        if self.model.text_encoder_device == "cpu":
            if lora_base and self.lora.train_text_encoder:
                problems.append("model.text_encoder_device: cpu cannot hold text encoders that LoRA trains "
                                "(turn off lora.train_text_encoder, or choose auto)")
            elif self.trains_token():
                problems.append("model.text_encoder_device: cpu cannot hold text encoders while a new word's "
                                "embedding trains (choose auto)")
            elif self.dataset.cache_text == "off" or self.caption_variation().varies_text:
                problems.append("model.text_encoder_device: cpu needs the captions cached (dataset.cache_text "
                                "auto, on or disk, and tags neither shuffled nor dropped)")
        if self.dataset.min_bucket_side > self.dataset.max_bucket_side:
            problems.append(f"dataset.min_bucket_side: must be ≤ dataset.max_bucket_side "
                            f"({self.dataset.max_bucket_side}), got {self.dataset.min_bucket_side}")
        problems += _path_problems(self)
        for index, concept in enumerate(self.concepts):
            if 0 < concept.resolution < 64:
                problems.append(f"concepts[{index}].resolution: must be 0 (= dataset.resolution) or ≥ 64, "
                                f"got {concept.resolution}")
            if concept.class_dir and not concept.class_prompt.strip():
                problems.append(f"concepts[{index}].class_prompt: a class folder needs a class prompt "
                                f"(e.g. 'a photo of dog')")
        if problems:
            # Raised as ValueError so pydantic reports it; _format_errors unwraps the text.
            raise ValueError("\n".join(problems))
        return self

    def trains_adapter(self) -> bool:
        """A LoRA (or LoHa/LoKr) run: LoRA mode, or DreamBooth without train_full_unet."""
        return self.mode == "lora" or (self.mode == "dreambooth" and not self.dreambooth.train_full_unet)

    def trains_token(self) -> bool:
        """A new word's embedding is trained: textual inversion, or pivotal tuning beside a LoRA."""
        return self.mode == "embedding" or (self.trains_adapter() and bool(self.embedding.token))

    def trains_text(self) -> bool:
        """Something in the text encoders is trained (their LoRA, or a new word): captions cannot be cached."""
        return (self.trains_adapter() and self.lora.train_text_encoder) or self.trains_token()

    def caption_variation(self) -> CaptionVariation:
        from trainer.dataset.caption_ops import CaptionVariation  # here: the config stays light for the GUI

        d = self.dataset
        return CaptionVariation(d.caption_dropout, d.tag_dropout, d.shuffle_tags, d.keep_tags, d.tag_separator)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def sections_for_mode(self) -> tuple[str, ...]:
        return SECTIONS_BY_MODE[self.mode]


def _sampling_problems(sampling: SamplingConfig, model_family: families.Family) -> list[str]:
    """Sample options the family's previews cannot honour (a parse error is the prompts' own validator's)."""
    if model_family.is_toy:
        return []
    problems = []
    name = model_family.display_name
    if sampling.sampler != "default" and model_family.sample_scheduler is None:
        problems.append(f"sampling.sampler: {name} draws with its model's own scheduler (its shift is part of the "
                        f"model); choose default")
    if sampling.negative_prompt.strip() and not model_family.negative_prompts:
        problems.append(f"sampling.negative_prompt: {name}'s previews take no negative prompt; leave it empty")
    for index, line in enumerate(sampling.prompts):
        try:
            prompt = parse_sample_prompt(line)
        except ValueError:
            continue
        if prompt.sampler not in (None, "default") and model_family.sample_scheduler is None:
            problems.append(f"sampling.prompts: prompt {index + 1}: --ss {prompt.sampler}: {name} draws with its "
                            "model's own scheduler")
        if prompt.negative and not model_family.negative_prompts:
            problems.append(f"sampling.prompts: prompt {index + 1}: --n: {name}'s previews take no negative prompt")
    return problems


def _noise_problems(config: Config, model_family: families.Family) -> list[str]:
    """The noise and timestep options a family cannot use, named with the family (flow matching has no DDPM
    schedule to rescale, no SNR to weight by, and its own σ distribution instead of multires noise)."""
    training, problems = config.training, []
    if training.timestep_min >= training.timestep_max:
        problems.append(f"training.timestep_min: must be < training.timestep_max ({training.timestep_max}), "
                        f"got {training.timestep_min}")
    if model_family.flow is not None:
        why = {"multires_noise_iterations": "draws its own σ and noise for flow matching (set 0)",
               "zero_terminal_snr": "trains by flow matching, whose last σ is already pure noise (turn it off)",
               "debiased_estimation": "trains by flow matching: there is no DDPM SNR to weight by (turn it off)"}
        for name, reason in why.items():
            if getattr(training, name):
                problems.append(f"training.{name}: {model_family.display_name} {reason}")
    if training.zero_terminal_snr and config.model.prediction_type == "epsilon":
        problems.append("training.zero_terminal_snr: needs v-prediction (at the last timestep the image is pure "
                        "noise, so predicting the noise says nothing about the image); set model.prediction_type "
                        "to v_prediction or auto with a v model")
    return problems


def _path_problem(value: str) -> str | None:
    """Why a path field's text can never name a file (checked before anything opens or resolves it)."""
    if "\x00" in value:
        return "contains a NUL character, which no file name can hold"
    if value.startswith("~") and os.path.expanduser(value).startswith("~"):
        user = value[1:].split("/", 1)[0].split("\\", 1)[0]
        return (f"'~{user}' is not a known user's home folder" if user
                else "'~' cannot be expanded (no home folder is known)")
    return None


def _path_problems(config: Config) -> list[str]:
    problems = []
    fields = [(dotted, getattr(getattr(config, dotted.split(".")[0]), dotted.split(".")[1]))
              for dotted in path_fields()]
    fields += [(f"concepts[{index}].{name}", getattr(concept, name))
               for index, concept in enumerate(config.concepts) for name in CONCEPT_PATH_FIELDS]
    for dotted, value in fields:
        for item in value if isinstance(value, list) else [value]:
            problem = _path_problem(item)
            if problem is not None:
                problems.append(f"{dotted}: {problem}, got {_shown(item)}")
    return problems


def _shown(value: Any, limit: int = 80) -> str:
    """``repr(value)``, shortened: a message stays one readable line whatever the file held."""
    text = repr(value) if not isinstance(value, Mapping) else "a table"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def nesting_depth(data: Any) -> int:
    """How deeply tables and lists nest in ``data`` (a plain value: 0); iterative, so any depth is safe."""
    deepest, stack = 0, [(data, 0)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, Mapping) else value if isinstance(value, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_NESTING:
            return deepest  # deep enough to refuse; no need to walk the rest
        stack.extend((child, depth + 1) for child in children)
    return deepest


# ----------------------------------------------------------------------------- migrations

# MIGRATIONS[n] turns a schema-n dict into a schema-(n+1) dict.  Add one per layout change;
# old files are then upgraded step by step when they are loaded.
Migration = Callable[[dict[str, Any]], dict[str, Any]]
MIGRATIONS: dict[int, Migration] = {}


def migrate(data: Mapping[str, Any], source: str | None = None) -> dict[str, Any]:
    """Upgrade a raw config dict to the current schema version."""
    data = dict(data)
    version = data.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError([f"schema_version: must be a whole number ≥ 1, got {version!r}"], source)
    current = SCHEMA_VERSION
    if version > current:
        raise ConfigError([f"schema_version: this file is version {version}, written by a newer Kamaal "
                           f"(this one reads up to {current})"], source)
    while version < current:
        step = MIGRATIONS.get(version)
        if step is None:
            raise ConfigError([f"schema_version: no migration from version {version}"], source)
        data = step(data)
        version += 1
        data["schema_version"] = version
    return data


# ----------------------------------------------------------------------------- errors

def _describe(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    got = error.get("input")
    shown = _shown(got)
    messages = {
        "greater_than_equal": lambda: f"must be ≥ {ctx.get('ge')}, got {shown}",
        "greater_than": lambda: f"must be > {ctx.get('gt')}, got {shown}",
        "less_than_equal": lambda: f"must be ≤ {ctx.get('le')}, got {shown}",
        "less_than": lambda: f"must be < {ctx.get('lt')}, got {shown}",
        "multiple_of": lambda: f"must be a multiple of {ctx.get('multiple_of')}, got {shown}",
        "literal_error": lambda: f"must be one of {ctx.get('expected')}, got {shown}",
        "extra_forbidden": lambda: "unknown key (check the spelling, or remove it)",
        "missing": lambda: "is required",
        "int_type": lambda: f"must be a whole number, got {shown}",
        "int_from_float": lambda: f"must be a whole number, got {shown}",
        "float_type": lambda: f"must be a number, got {shown}",
        "finite_number": lambda: f"must be a finite number, got {shown}",
        "bool_type": lambda: f"must be true or false, got {shown}",
        "string_type": lambda: f"must be text, got {shown}",
        "list_type": lambda: f"must be a list, got {shown}",
        "string_pattern_mismatch": lambda: f"has characters that are not allowed, got {shown}",
        "string_too_short": lambda: f"must not be empty, got {shown}",
        "string_too_long": lambda: f"must be at most {ctx.get('max_length')} characters",
        "model_type": lambda: f"must be a table, got {shown}",
        "dataclass_type": lambda: f"must be a table, got {shown}",
    }
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    make = messages.get(kind)
    return make() if make else f"{error['msg'][0].lower()}{error['msg'][1:]}, got {shown}"


def field_location(parts: Iterable[str | int]) -> str:
    """``("concepts", 1, "repeats")`` → ``concepts[1].repeats``: list items the way people write them."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _format_errors(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors():
        loc = field_location(error["loc"])
        text = _describe(error)
        if error["type"] == "value_error" and not loc:
            problems.extend(text.splitlines())  # cross-field checks already name their fields
        else:
            problems.append(f"{loc}: {text}" if loc else text)
    return problems


# ----------------------------------------------------------------------------- loading and saving

def config_from_dict(data: Any, source: str | None = None) -> Config:
    """Validate a raw dict (as read from TOML) into a Config, migrating old layouts first."""
    if not isinstance(data, Mapping):
        raise ConfigError([f"the config must be a table of settings, got {type(data).__name__}"], source)
    if nesting_depth(data) > MAX_NESTING:
        raise ConfigError([f"tables or lists are nested more than {MAX_NESTING} deep; a config has at most "
                           "three levels (e.g. concepts[0].path)"], source)
    try:
        return Config.model_validate(migrate(data, source))
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc), source) from None


def read_toml(path: Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(["file not found"], str(path)) from None
    except IsADirectoryError:
        raise ConfigError(["is a folder, not a config file"], str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError(["is not UTF-8 text"], str(path)) from None
    except OSError as exc:
        raise ConfigError([f"cannot be read ({exc.strerror})"], str(path)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"is not valid TOML ({exc})"], str(path)) from None
    except RecursionError:  # inline tables or arrays hundreds deep
        raise ConfigError([f"is nested too deeply to read (a config has at most {MAX_NESTING} levels)"],
                          str(path)) from None
    if nesting_depth(data) > MAX_NESTING:
        raise ConfigError([f"tables or lists are nested more than {MAX_NESTING} deep; a config has at most "
                           "three levels (e.g. concepts[0].path)"], str(path))
    return data


def load_config(path: Path, overrides: Iterable[str] = ()) -> Config:
    """Read a TOML config, apply ``KEY=VALUE`` overrides, validate, and resolve relative paths.

    Relative paths in the file resolve against the file's folder; relative paths given as
    overrides resolve against the current directory.
    """
    path = Path(path)
    data = read_toml(path)
    data = apply_overrides(data, overrides)
    try:
        config = config_from_dict(data, str(path))
    except ConfigError as error:
        raise _blame_overrides(error, list(overrides), path) from None
    return resolve_paths(config, path.parent.resolve(), skip=_override_keys(overrides))


def _blame_overrides(error: ConfigError, overrides: list[str], path: Path) -> ConfigError:
    """A problem with a value given as ``--set KEY=VALUE`` names the ``--set``, not the file; one that
    only arises with the overrides (``--set training.steps=60`` under the file's ``warmup_steps = 100``)
    says which overrides were applied."""
    if not overrides:
        return error
    given = {override.partition("=")[0].strip(): override for override in overrides}
    problems = []
    for problem in error.problems:
        name, sep, message = problem.partition(": ")
        if sep and name in given:
            problems.append(f"--set {given[name]}: {message}")
        else:
            problems.append(f"{path}: {problem} (with --set {', --set '.join(overrides)})")
    return ConfigError(problems)


def save_config(config: Config, path: Path) -> None:
    atomic_write_text(Path(path), config.to_toml())


def _fields_marked(marker: str) -> list[str]:
    names = []
    for section_name, section_field in Config.model_fields.items():
        section_type = section_field.annotation
        if isinstance(section_type, type) and issubclass(section_type, Section):
            for name, field in section_type.model_fields.items():
                if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get(marker):
                    names.append(f"{section_name}.{name}")
    return names


def path_fields() -> list[str]:
    """Dotted names of every field that holds a path."""
    return _fields_marked("path")


def diffusion_only_fields() -> list[str]:
    """Dotted names of the fields only Stable Diffusion training reads."""
    return _fields_marked("diffusion_only")


CONCEPT_PATH_FIELDS = tuple(name for name, field in ConceptConfig.model_fields.items()
                            if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("path"))


def resolve_paths(config: Config, base: Path, skip: Iterable[str] = ()) -> Config:
    """Make every relative path field absolute against ``base`` (fields in ``skip`` against the CWD)."""
    skipped = set(skip)
    data = config.to_dict()

    def resolved(dotted: str, value: str) -> str:
        root = Path.cwd() if dotted in skipped else base
        # os.path.expanduser: the same expansion the validator checked (Path.expanduser raises on '~nobody').
        return str((root / os.path.expanduser(value)).resolve()) if value else value

    for dotted in path_fields():
        section, name = dotted.split(".")
        value = data[section][name]
        data[section][name] = [resolved(dotted, v) for v in value] if isinstance(value, list) \
            else resolved(dotted, value)
    for index, concept in enumerate(data["concepts"]):
        for name in CONCEPT_PATH_FIELDS:
            concept[name] = resolved(f"concepts[{index}].{name}", concept[name])
    return Config.model_validate(data)


# ----------------------------------------------------------------------------- overrides

_LIST_ITEM = re.compile(r"\[(\d+)\]")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``training.learning_rate=1e-4`` → (["training", "learning_rate"], 0.0001).

    A list item is written ``concepts[1].repeats=3`` (or ``concepts.1.repeats``); the item must exist.

    The value is read as a TOML value (numbers, true/false, ["lists"], "quoted text");
    anything that is not valid TOML is taken as plain text, so ``--set model.path=C:/x`` works.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError([f"--set {text!r}: expected KEY=VALUE, e.g. training.steps=500"])
    parts = _LIST_ITEM.sub(r".\1", key).split(".")  # concepts[1].repeats → concepts, 1, repeats
    if any(not part for part in parts) or parts[0].isdigit():
        raise ConfigError([f"--set {text!r}: '{key}' is not a valid key"])
    raw = raw.strip()
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw
    except RecursionError:
        raise ConfigError([f"--set {_shown(text)}: the value is nested too deeply"]) from None
    return parts, value


def _override_keys(overrides: Iterable[str]) -> list[str]:
    return [field_location(int(part) if part.isdigit() else part for part in parse_override(item)[0])
            for item in overrides]


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``KEY=VALUE`` override set (tables created as needed)."""
    result: dict[str, Any] = _deep_copy(data)
    for item in overrides:
        parts, value = parse_override(item)
        table: Any = result
        for i, part in enumerate(parts[:-1]):
            if isinstance(table, list):
                if not part.isdigit() or int(part) >= len(table):
                    raise ConfigError([f"--set {item!r}: '{'.'.join(parts[:i])}' has no item {part} "
                                       f"(it has {len(table)})"])
                child = table[int(part)]
            else:
                child = table.setdefault(part, {})
            if not isinstance(child, dict | list):
                raise ConfigError([f"--set {item!r}: '{'.'.join(parts[:i + 1])}' is a value, not a table"])
            table = child
        if isinstance(table, list):
            raise ConfigError([f"--set {item!r}: set a field of a list item, e.g. concepts[0].repeats=2"])
        table[parts[-1]] = value
    return result


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _copy_value(value) for key, value in data.items()}


def _copy_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _deep_copy(value)
    return [_copy_value(item) for item in value] if isinstance(value, list) else value
