"""How the hyperparameter form groups the config's fields for people, and which groups a mode shows.

The config is organised for the trainer (sections: model, training, lora, …); the form is organised
for the person filling it in: *Basics* first (what to train, how long, how fast), then the model and
data, then the mode's own settings, then the knobs most people never touch.  Every config field
lands in exactly one group (a test checks it), so adding a field to the config adds it to the form.

A field is shown when its config section applies to the mode (``trainer.config.SECTIONS_BY_MODE``,
with the toy network's sections swapped in and out by architecture) and, for diffusion-only fields,
when the model is Stable Diffusion.  A group is shown while any of its fields is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from desktop_app.train.field_meta import all_field_names
from trainer.config import SECTIONS_BY_MODE, diffusion_only_fields
from trainer.families import FAMILIES, is_toy


@dataclass(frozen=True)
class Group:
    key: str
    title: str  # "&&" shows one "&" (a single one would mark a keyboard mnemonic)
    fields: tuple[str, ...]
    hint: str = ""


GROUPS: tuple[Group, ...] = (
    Group("basics", "Basics", ("mode", "model.architecture", "training.steps", "training.batch_size",
                               "training.learning_rate", "training.seed", "output.run_name")),
    Group("model", "Model", ("model.path", "model.text_encoder_files", "model.vae_file", "model.tokenizer_folder",
                             "model.prediction_type")),
    Group("frozen", "Frozen layers", ("frozen.trainable",),
          "Tick the blocks to train; everything else stays frozen."),
    Group("dataset", "Dataset", ("dataset.instance_token", "dataset.caption_template", "dataset.caption_extension",
                                 "dataset.resolution", "dataset.repeats", "dataset.bucketing",
                                 "dataset.min_bucket_side", "dataset.max_bucket_side", "dataset.no_upscale",
                                 "dataset.crop", "dataset.flip", "dataset.caption_dropout", "dataset.tag_dropout",
                                 "dataset.shuffle_tags", "dataset.keep_tags", "dataset.tag_separator",
                                 "dataset.masked_loss", "dataset.unmasked_weight")),
    Group("lora", "LoRA", ("lora.adapter", "lora.rank", "lora.alpha", "lora.dropout", "lora.target_modules",
                           "lora.train_text_encoder")),
    Group("dreambooth", "DreamBooth", ("dreambooth.instance_prompt", "dreambooth.class_prompt",
                                       "dreambooth.prior_preservation", "dreambooth.class_dir",
                                       "dreambooth.num_class_images", "dreambooth.prior_loss_weight",
                                       "dreambooth.train_full_unet")),
    Group("embedding", "New word", ("embedding.token", "embedding.init_text", "embedding.vectors",
                                    "embedding.learning_rate"),
          "Textual inversion: a new word whose embedding learns your subject. With LoRA, an empty word trains none."),
    Group("toy", "Toy network", ("toy.samples", "toy.holdout_fraction", "toy.task_seed", "toy.shifted",
                                 "toy.noise", "toy.weights_every", "toy.step_delay_ms")),
    Group("optimizer", "Optimizer", ("training.optimizer", "training.scheduler", "training.lr_cycles",
                                     "training.lr_power", "training.warmup_steps",
                                     "training.weight_decay", "training.max_grad_norm",
                                     "training.ema_decay", "training.ema_on_cpu")),
    Group("noise", "Noise && timesteps", ("training.noise_offset", "training.multires_noise_iterations",
                                          "training.multires_noise_discount", "training.timestep_min",
                                          "training.timestep_max", "training.min_snr_gamma",
                                          "training.debiased_estimation", "training.zero_terminal_snr"),
          "How training noises the images, and which noise levels it weighs: kohya's options."),
    Group("memory", "Memory && speed", ("model.precision", "model.base_quantization", "model.blocks_to_swap",
                                       "model.text_encoder_quantization", "model.text_encoder_device",
                                       "training.gradient_accumulation_steps",
                                       "training.gradient_checkpointing", "dataset.cache_latents",
                                       "dataset.cache_text", "training.torch_compile")),
    Group("sampling", "Sampling", ("sampling.prompts", "sampling.negative_prompt", "sampling.seeds",
                                   "sampling.every_n_steps", "sampling.at_start", "sampling.inference_steps",
                                   "sampling.guidance_scale", "sampling.sampler", "sampling.width",
                                   "sampling.height")),
    Group("output", "Output", ("output.runs_dir", "output.checkpoint_every", "output.keep_checkpoints",
                               "output.tensorboard",
                               "training.log_every", "training.eval_every")),
)
GROUP_OF = {name: group.key for group in GROUPS for name in group.fields}
# Fields edited elsewhere: the concepts (folders, names, further concepts) belong to the Dataset page.
NOT_IN_FORM = frozenset({"schema_version", "dataset.path", "dataset.name", "concepts"})
# The first concept's own fields.  With several concepts the form hides them: the Dataset group's list
# shows every concept's (``concept_summary``), so "Instance token" never reads as everyone's.
FIRST_CONCEPT_FIELDS = frozenset({"dataset.instance_token", "dataset.caption_template", "dataset.repeats",
                                  "dreambooth.class_prompt", "dreambooth.class_dir", "dreambooth.num_class_images"})
TOY_ONLY, NOT_FOR_TOY = frozenset({"toy"}), frozenset({"dataset", "sampling"})
DIFFUSION_ONLY = frozenset(diffusion_only_fields())
ALWAYS_SHOWN = frozenset({"mode", "model.architecture"})
# Fields that mean something only for DDPM families (ε/v prediction); flow-matching families hide them.
DDPM_ONLY = frozenset({"model.prediction_type", "training.min_snr_gamma", "training.debiased_estimation",
                       "training.multires_noise_iterations", "training.multires_noise_discount",
                       "training.zero_terminal_snr", "sampling.sampler"})
# Hidden where the family's previews take no negative prompt (Flux.1 dev's guidance is distilled).
NEGATIVE_PROMPT = "sampling.negative_prompt"
SAMPLE_PROMPTS = "sampling.prompts"  # not for an edit family: its previews edit the first pairs with their captions
# The separate files of a transformer family's single-file base (Flux: clip_l, t5xxl, ae); others hide them.
TRANSFORMER_ONLY = frozenset({"model.text_encoder_files", "model.vae_file"})
# Only families whose tokenizer is not shipped (Lumina 2's Gemma) read single files with a tokenizer folder.
TOKENIZER_FOLDER = "model.tokenizer_folder"
# Only families whose text encoders declare their blocks (Qwen-Image's Qwen2.5-VL) can store them in fewer bits.
QUANTIZABLE_TEXT_ONLY = frozenset({"model.text_encoder_quantization"})
# A quantized base is frozen: a frozen-layer run trains base weights, so it hides the choice.
NOT_FOR_FROZEN = frozenset({"model.base_quantization"})


# Fields that mean something only for some values of another field: hidden otherwise (a cosine schedule has no
# power, an EMA of decay 0 no place).  Field → (the field it follows, whether that field's value shows it).
FOLLOWS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "training.lr_cycles": ("training.scheduler", lambda value: value == "cosine_with_restarts"),
    "training.lr_power": ("training.scheduler", lambda value: value == "polynomial"),
    "training.ema_on_cpu": ("training.ema_decay", bool),
    "training.multires_noise_discount": ("training.multires_noise_iterations", bool),
    "dataset.keep_tags": ("dataset.shuffle_tags", bool),
    "dataset.min_bucket_side": ("dataset.bucketing", bool),
    "dataset.max_bucket_side": ("dataset.bucketing", bool),
    "dataset.unmasked_weight": ("dataset.masked_loss", bool),
    "embedding.init_text": ("embedding.token", bool),
    "embedding.vectors": ("embedding.token", bool),
    "embedding.learning_rate": ("embedding.token", bool),
}
LEADERS = frozenset(leader for leader, _ in FOLLOWS.values())


def follows_value(name: str, value_of: Callable[[str], Any]) -> bool:
    """Whether the field the ``name`` field follows (if any) has a value that shows it."""
    if name not in FOLLOWS:
        return True
    leader, shows = FOLLOWS[name]
    return shows(value_of(leader))


def visible_sections(mode: str, architecture: str) -> tuple[str, ...]:
    sections = SECTIONS_BY_MODE.get(mode, ())
    hidden = NOT_FOR_TOY if is_toy(architecture) else TOY_ONLY
    return tuple(section for section in sections if section not in hidden)


def field_visible(name: str, mode: str, architecture: str) -> bool:
    if name in ALWAYS_SHOWN:
        return True
    if name in DIFFUSION_ONLY and is_toy(architecture):
        return False
    if name in DDPM_ONLY and architecture in FAMILIES and FAMILIES[architecture].flow is not None:
        return False
    if name.startswith("embedding.") and architecture in FAMILIES and "embedding" not in FAMILIES[architecture].modes:
        return False  # new words are for the CLIP text encoders of SD 1.x/2.x/SDXL
    if name == NEGATIVE_PROMPT and architecture in FAMILIES and not FAMILIES[architecture].negative_prompts:
        return False
    if name == SAMPLE_PROMPTS and architecture in FAMILIES and FAMILIES[architecture].edit:
        return False
    if name in TRANSFORMER_ONLY and not (architecture in FAMILIES and FAMILIES[architecture].kind == "transformer"):
        return False
    if name == TOKENIZER_FOLDER and not (architecture in FAMILIES and FAMILIES[architecture].needs_tokenizer_folder):
        return False
    if name in QUANTIZABLE_TEXT_ONLY and not (
            architecture in FAMILIES and any(spec.blocks for spec in FAMILIES[architecture].text_encoders)):
        return False
    if name in NOT_FOR_FROZEN and mode == "frozen":
        return False
    return name.partition(".")[0] in visible_sections(mode, architecture)


def visible_groups(mode: str, architecture: str) -> tuple[str, ...]:
    return tuple(group.key for group in GROUPS
                 if any(field_visible(name, mode, architecture) for name in group.fields))


def ungrouped_fields() -> list[str]:
    """Config fields that no group holds (should be none; the form test checks)."""
    return [name for name in all_field_names() if name not in GROUP_OF and name not in NOT_IN_FORM]
