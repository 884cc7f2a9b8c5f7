"""What a model family declares: the types of the registry (light — no torch, no diffusers).

A :class:`Family` is data: names, the diffusers classes to build, where each component sits in a single
file, the text encoders, the LoRA file conventions, the memory estimate's constants, the tiny test model.
The engine reads these facts instead of asking "is this SDXL?"; a family whose training differs in kind
(flow matching, other conditioning) adds its behaviour next to its facts in its own module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

PredictionType = Literal["epsilon", "v_prediction", "flow_matching"]
Kind = Literal["toy", "unet", "transformer"]
GB = 1024**3


SHIPPED_TOKENIZERS = ("clip", "t5", "qwen3")  # resources/tokenizers: what single files of a family can use


@dataclass(frozen=True)
class TextEncoder:
    """One text encoder of a family, as the pipeline names it and as a single file stores it."""

    component: str  # the pipeline's attribute: "text_encoder", "text_encoder_2"
    transformers_class: str  # "CLIPTextModel", "CLIPTextModelWithProjection"
    open_clip: bool  # an OpenCLIP encoder: pads with "!" and is stored in OpenCLIP's layout in single files
    single_file_prefix: str  # where its weights start in an original-layout (CompVis/SGM) file
    label: str = "text encoder"  # for messages: "first text encoder"
    # Its vocabulary: shipped in resources/tokenizers (clip, t5, qwen3), or only in the model's folder (gemma, llama:
    # single files then need ``model.tokenizer_folder`` or the tokenizer ComfyUI keeps; Mistral's Tekken BPE, which
    # no package Kamaal may ship it from provides: "mistral" with Mistral Small 3's chat template (Flux.2 dev),
    # "tekken" as Ministral 3's plain tokenizer (ERNIE-Image)).
    tokenizer_kind: Literal["clip", "t5", "qwen3", "gemma", "mistral", "tekken", "llama"] = "clip"
    # Whether ``lora.train_text_encoder`` may put adapters on it: the families' LoRA loaders take CLIP's; a
    # language model used as an encoder (Z-Image's Qwen3) is trained by no trainer and loaded by no loader.
    lora: bool = True
    # Its containers of repeated blocks (dotted module paths): the Linear layers inside them are what
    # ``model.text_encoder_quantization`` stores in fewer bits.  Empty: the encoder is never quantized.
    blocks: tuple[str, ...] = ()
    # The transformers class its tokenizer folder is read with, where the class the folder names needs a library
    # Kamaal does not install: a multimodal processor whose image or video half transformers 5 builds only with
    # torchvision (Flux.2 dev's ``PixtralProcessor``, Kandinsky 5's ``Qwen2VLProcessor``).  The pipelines' text-to-image
    # path calls the text tokenizer alone (its chat template kept: ``component_files.text_tokenizer``).
    tokenizer_class: str | None = None
    # The pipeline's attribute for its tokenizer, where it is not the component's name with "tokenizer" for
    # "text_encoder" (Qwen-Image 2.1's Qwen3-VL reads prompts through a ``processor``).
    tokenizer_component: str = ""
    # The chat template its tokenizer renders prompts with where Kamaal supplies the vocabulary (the shipped Qwen3
    # one, for a tiny or random model): the model's own, where it differs from the vocabulary's (Qwen3-VL's).
    chat_template: str | None = None

    @property
    def tokenizer(self) -> str:
        return self.tokenizer_component or self.component.replace("text_encoder", "tokenizer")


@dataclass(frozen=True)
class MemoryFacts:
    """The memory estimate's constants for a family (``trainer/memory_estimate.py`` says what each means)."""

    reference_parameters: dict[str, int]  # by component, of the real reference checkpoint
    lora_per_rank: int = 0  # LoRA parameters per unit of rank, the four attention projections targeted
    text_lora_per_rank: int = 0  # the same for the text encoders together
    activation_bytes_per_latent_pixel: float = 0.0  # fp16, no checkpointing, reference model, per sample
    # Share of the denoiser's parameters in the Linear layers of its blocks: what base quantization stores in
    # fewer bits (a UNet's convolutions stay; a transformer is nearly all Linear).  Checked against the configs.
    quantizable_share: float = 0.99
    # How many blocks ``model.blocks_to_swap`` chooses from in the reference model (checked against the configs).
    block_count: int = 0
    # Share of the text encoders' parameters in the Linear layers of their ``TextEncoder.blocks``: what
    # ``model.text_encoder_quantization`` stores in fewer bits (checked against the configs).
    text_quantizable_share: float = 0.0


@dataclass(frozen=True)
class KohyaFacts:
    """How kohya's scripts (and A1111, ComfyUI reading kohya files) describe a family's LoRA."""

    modelspec_architecture: str  # "modelspec.architecture" in a LoRA file's metadata
    base_model_version: str  # kohya's "ss_base_model_version"
    lora_family: str  # which LoRAs fit: families sharing a layout share it ("sd1/2")
    lora_family_label: str  # that, for people: "Stable Diffusion 1.x/2.x"
    original_unet_names: bool  # kohya names the UNet's modules in the original (SAI) layout
    v2: bool = False  # kohya's "ss_v2"
    # How a LoRA file of unknown origin shows it is for this LoRA family: a marker (lower case) in its
    # "ss_base_model_version" + "modelspec.architecture", and fragments of its module names.
    version_markers: tuple[str, ...] = ()
    name_markers: tuple[str, ...] = ()
    implementation: str = "diffusers"  # "modelspec.implementation"
    # Transformer families: "module:function" giving, from the transformer's config, where each diffusers module
    # sits in the original layout kohya names (fused layers too); None: no kohya file for this family yet.
    transformer_layout: str | None = None
    network_module: str = "networks.lora"  # kohya's "ss_network_module"
    # How the original-layout file names a denoiser module: "lora_unet_" + its path with dots → underscores (kohya's),
    # or "diffusion_model." + its path as it is (ai-toolkit's for Ideogram 4: ComfyUI's generic names, and the only
    # ones diffusers' converter for that family reads).
    original_prefix: Literal["lora_unet_", "diffusion_model."] = "lora_unet_"
    # How a LoHa/LoKr file names the denoiser's modules so that ComfyUI applies it: "kohya" (``lora_unet_…``, the
    # UNet families), "diffusers" (``lycoris_`` + the diffusers module path, which ComfyUI maps onto the slices of
    # SD 3.5's and Flux's fused layers), or None (a new family's default, until its ComfyUI mapping is checked):
    # no LyCORIS file for this family, and LoHa/LoKr are refused by name.
    lycoris_names: Literal["kohya", "diffusers"] | None = None


@dataclass(frozen=True)
class FlowFacts:
    """Flow matching (rectified flow, SD 3 and Flux): x_t = (1 − σ)·x₀ + σ·ε, the model predicts ε − x₀.

    Timesteps are drawn as in the SD3 paper and the Flux trainers: ``sampling`` "logit_normal" (σ =
    sigmoid(N(mean, std))), "mode" or "uniform", then shifted, σ' = s·σ / (1 + (s − 1)·σ), by ``shift`` or,
    with ``resolution_shift`` (Flux), by s = exp(μ) with μ interpolated in the image's token count between
    (``base_seq_len``, ``base_shift``) and (``max_seq_len``, ``max_shift``).
    """

    sampling: str = "logit_normal"
    logit_std: float = 1.0  # the spread of "logit_normal": σ = sigmoid(logit_std · N(0, 1)) before the shift
    shift: float = 1.0
    resolution_shift: bool = False
    base_shift: float = 0.5
    max_shift: float = 1.15
    base_seq_len: int = 256
    max_seq_len: int = 4096


@dataclass(frozen=True)
class Family:
    name: str  # the config's model.architecture
    display_name: str  # for people: "Stable Diffusion 1.x"
    modes: tuple[str, ...]  # the training modes it supports
    # The generation it belongs to, as the form's architecture list groups families ("Stable Diffusion (2022–23)");
    # families of one generation are neighbours in ``_MODULES``.  Empty: listed before every group (the toy).
    generation: str = ""
    kind: Kind = "unet"
    job: str = "trainer.jobs.diffusion:DiffusionJob"  # "module:Class" that trains it, imported when it runs
    # "module:Class" of the engine: noise, targets and loss, prompt encoding, the denoiser's call (heavy).
    engine: str = "trainer.diffusion.engines:UnetEngine"
    denoiser: str = "unet"  # the pipeline component that is trained: "unet" or "transformer"
    flow: FlowFacts | None = None  # flow matching, or None for DDPM (ε / v prediction)
    sample_scheduler: str | None = "DDIMScheduler"  # for previews; None: the model's own scheduler
    max_sequence_length: int | None = None  # T5 tokens, where the family has T5 (training = sampling)
    single_file: bool = True  # Kamaal reads and writes its full models as original-layout single files
    # Where a family is not read from single files yet: "module:function(pipeline) -> state dict" that writes a
    # full/frozen run's single file in the layout the other tools load (Flux: the BFL transformer file).
    single_file_writer: str | None = None
    # "module:function(checkpoint, config_dir, dtype, text_encoder_files, vae_file) -> pipeline" reading the
    # family's own single files (Flux: the BFL transformer with clip_l, t5xxl and ae files beside it); a family
    # that ``needs_tokenizer_folder`` also gets ``tokenizer_folder=`` (the config's ``model.tokenizer_folder``).
    single_file_reader: str | None = None
    # Key fragments that show a single file holds this family (to name it where its single files are refused).
    file_markers: tuple[str, ...] = ()
    # Key fragments such a file never has, where a family shares its markers with another (Lumina 2's NextDiT keys
    # are Z-Image's without its pad tokens): these families are asked first.
    file_lacks: tuple[str, ...] = ()
    # The family this one is a variant of (Chroma of Flux.1): its files carry the other's markers too, so single
    # files are tested for a variant's markers before its parent's.
    variant_of: str | None = None
    pipeline_class: str = ""  # the diffusers pipeline that loads, samples and saves it
    pipeline_args: dict[str, Any] = field(default_factory=dict)  # extra arguments for that pipeline
    # "module:function(pipeline)" run on every pipeline Kamaal builds to sample, where the pipeline needs a setting its
    # constructor does not take (Kandinsky 5: previews at any size, not snapped to its trained resolutions).
    pipeline_setup: str | None = None
    # The denoiser's modules ``lora.target_modules`` names when the config does not (None: the config's default,
    # diffusers' attention names to_q/to_k/to_v/to_out.0); for transformers whose attention is named otherwise.
    lora_target_modules: tuple[str, ...] | None = None
    # "module:function(folder) -> dict": components Kamaal builds for the pipeline's ``from_pretrained`` of a
    # diffusers folder, where diffusers' own loader would need a library Kamaal does not install (Qwen-Image 2.1's
    # Qwen3-VL processor, read as text).  None: diffusers loads every component.
    pipeline_parts: str | None = None
    # Pipeline components that are neither trained nor text encoders but take part in sampling (Ideogram 4's
    # unconditional transformer): loaded with the model, frozen, on the device as the denoiser's frozen weights are.
    frozen_components: tuple[str, ...] = ()
    # Arguments every preview call of the pipeline gets (Ideogram 4: ``guidance_schedule=None``, so that its
    # ``guidance_scale`` is the one used).
    call_arguments: dict[str, Any] = field(default_factory=dict)
    # "module:function(pipe, prompt) -> dict": the call's arguments for one prompt (Ideogram 4: its text padded only
    # as far as the prompt needs, not to the pipeline's 2048 tokens — the image is the same, the encoding far cheaper).
    prompt_arguments: str | None = None
    text_encoders: tuple[TextEncoder, ...] = ()
    # What the pipeline's ``encode_prompt`` returns, as the pipeline's call takes it back (None: not taken): how
    # previews run from prompts encoded once, while the text encoders wait off the GPU.  Empty: the pipeline's call
    # takes no encoded prompts (Ideogram 4) and encodes each preview's prompt itself, where the encoder waits.
    prompt_outputs: tuple[str | None, ...] = ("prompt_embeds", "negative_prompt_embeds")
    # The pipeline runs classifier-free guidance (a second pass on the negative prompt) when its
    # ``guidance_scale`` is above this: 1 for Stable Diffusion's pipelines, 0 for Z-Image's.
    guided_above: float = 1.0
    # How its pipeline is usually run, where that differs from the config's defaults (sampling.guidance_scale,
    # sampling.inference_steps): the form follows them when a person switches family.
    sample_defaults: dict[str, float] = field(default_factory=dict)
    # The pipeline's argument for that scale (Qwen-Image's is ``true_cfg_scale``; its ``guidance_scale`` is for
    # guidance-distilled models), and the negative prompt it needs to guide at all (None: guides without one).
    guidance_argument: str = "guidance_scale"
    negative_prompt: str | None = None
    # Whether its previews take a person's negative prompt (``sampling.negative_prompt``, a prompt's --n): not
    # where the pipeline does not guide with one (Flux.1 dev is guidance-distilled).
    negative_prompts: bool = True
    # Where ``encode_prompt`` encodes the prompt alone (Qwen-Image): the names the pipeline's call takes for the
    # same outputs of the negative prompt, encoded by a second call.  Empty: ``prompt_outputs`` has both sides.
    negative_outputs: tuple[str | None, ...] = ()
    size_conditioning: bool = False  # SDXL's micro-conditioning: original size, crop, target size
    # Which hidden state of the text encoders conditions the UNet: the last (SD 1.x/2.x as diffusers runs them)
    # or the penultimate, every encoder's side by side, plus the pooled projection (SDXL).
    prompt_hidden_state: Literal["last", "penultimate"] = "last"
    config_folders: dict[str, str] = field(default_factory=dict)  # prediction type → resources/model_configs/
    default_prediction: PredictionType = "epsilon"
    cross_attention_width: int | None = None  # of the real model's UNet, which tells 1.x from 2.x files
    v_prediction_by_weights: bool = False  # ε and v models share a layout: a weight statistic tells them apart
    # The denoiser's containers of repeated blocks (its ModuleLists): the Linear layers inside them are what
    # ``model.base_quantization`` stores in fewer bits; embedders and the final layer stay as they are.
    blocks: tuple[str, ...] = ("down_blocks", "mid_block", "up_blocks")
    memory: MemoryFacts = field(default_factory=lambda: MemoryFacts({}))
    kohya: KohyaFacts | None = None
    tiny: dict[str, Any] = field(default_factory=dict)  # the tiny test model's UNet and text encoders
    # An edit family trains on pairs (``trainer.dataset.pairs``): a target image, the instruction in its caption, and
    # up to this many control (reference) images that condition the denoiser — Kontext's control latents as extra
    # tokens.  0: a text-to-image family, whose control images a paired concept's health check says are ignored.
    control_images: int = 0
    # Its text encoder also reads the pair's control images (Qwen-Image-Edit's Qwen2.5-VL sees them as vision tokens in
    # the prompt): a caption's conditioning depends on its pair, so the caption cache keys each pair, not each caption.
    # Its engine's ``encode_prompts`` takes ``controls=`` (each prompt's control pictures) and has ``condition_images``
    # (the pictures as its pipeline's call hands them to ``encode_prompt``: ``engine_qwenedit``).
    text_reads_controls: bool = False
    # The family whose single files hold this one's denoiser under the same keys (Kontext dev's BFL file is Flux.1
    # dev's: nothing in it tells them apart), so a file detected as that family loads as this one when the config's
    # ``model.architecture`` names it.  None: its files are its own (``file_markers``).
    files_of: str | None = None

    @property
    def is_toy(self) -> bool:
        return self.kind == "toy"

    @property
    def a_name(self) -> str:
        """Its name with the article a sentence needs: "a Flux.1", "an ERNIE-Image", "an Ideogram 4"."""
        return f"{'an' if self.display_name[0] in 'AEIOU' else 'a'} {self.display_name}"

    @property
    def edit(self) -> bool:
        """It trains on before/after pairs (control images + target), not on images alone."""
        return self.control_images > 0

    @property
    def needs_tokenizer_folder(self) -> bool:
        """Its single files need ``model.tokenizer_folder``: a text encoder whose tokenizer Kamaal cannot ship."""
        return self.single_file_reader is not None and any(
            encoder.tokenizer_kind not in SHIPPED_TOKENIZERS for encoder in self.text_encoders)

    @property
    def component_names(self) -> tuple[str, ...]:
        return (self.denoiser, *(encoder.component for encoder in self.text_encoders))
