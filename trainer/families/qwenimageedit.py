"""Qwen-Image-Edit 2509/2511 (Alibaba Qwen, 20.4 B): Qwen-Image's transformer fine-tuned to edit — the control
images' latents (its own VAE, per-channel normalised) are packed 2×2 as tokens after the noisy target's, described to
the transformer's rotary embedding by ``img_shapes`` (one (1, rows, columns) per image), and the prediction is read
off the target's tokens; the control images also go through Qwen2.5-VL as vision tokens in the instruction's chat
prompt ("Picture 1: <|vision_start|><|image_pad|><|vision_end|>Picture 2: …" + the instruction, in the edit system
prompt), so the text conditioning depends on the pair, not on the caption alone (``QwenImageEditPlusPipeline``: up
to three control images a pair).

One family for 2509 and 2511: their folders have the same classes, configs and pipeline (the "Plus" one, up to three
reference images); 2511 is new weights.  The first Qwen-Image-Edit (2508) has another pipeline
(``QwenImageEditPipeline``: one image, a 1-megapixel condition image in the VL prompt, no "Picture 1:" label) but
the same files: a variant of a few lines here, not built — the 2509/2511 generation is what people train edit LoRAs
for in 2026.

A variant of Qwen-Image (``qwenimage.FAMILY``): the same transformer config, VAE, Qwen2.5-VL, flow matching, LoRA
names (a Qwen-Image-Edit LoRA is a Qwen-Image LoRA by its keys: musubi-tuner's and ComfyUI's) and single-file layout.
Its own: the pipeline class, the engine (``diffusion/engine_qwenedit.py``), the registry's pair facts, and the
pipeline's ``processor`` with its image half (``models/qwen_vl_images``: Pillow, no torchvision)."""

from dataclasses import replace

from trainer.families import qwenimage
from trainer.families.base import GB

FAMILY = replace(
    qwenimage.FAMILY,
    name="qwenimageedit",
    display_name="Qwen-Image-Edit",
    variant_of="qwenimage",
    modes=("lora",),  # an edit LoRA; a full run's transformer file is Qwen-Image's: nothing reads it as an edit model
    engine="trainer.diffusion.engine_qwenedit:QwenEditEngine",
    pipeline_class="QwenImageEditPlusPipeline",
    # The pipeline reads the prompt and the condition image through ``processor`` (its ``tokenizer`` is unused).
    pipeline_parts="trainer.models.qwen_vl_images:pipeline_parts",
    pipeline_args={"tokenizer": None},
    text_encoders=(replace(qwenimage.FAMILY.text_encoders[0], tokenizer_component="processor"),),
    # QwenImageEditPlusPipeline's defaults: true_cfg_scale 4 with a negative prompt, 40 steps in its examples.
    sample_defaults={"guidance_scale": 4.0, "inference_steps": 40},
    single_file_writer=None,
    single_file_reader="trainer.models.qwen_vl_images:load_qwenimageedit_single_file",
    file_markers=(),  # its transformer file is Qwen-Image's: detected as Qwen-Image, loaded so when the config names it
    files_of="qwenimage",
    config_folders={"flow_matching": "qwen-image-edit-2509"},
    # The Plus pipeline's up to three pictures (control/, control_2/, control_3/): each one's vision tokens in the
    # prompt ("Picture 1: …Picture 2: …") and its latents packed after the target's with an img_shapes entry of its own.
    control_images=3,
    text_reads_controls=True,
    memory=replace(
        qwenimage.FAMILY.memory,
        # One control image's tokens double the image part of the sequence (as Kontext's): twice Qwen-Image's
        # activations per target pixel (each further control adds as much again; the presets assume one).  A
        # control's vision tokens in the prompt (384² pixels: ~190) are few.
        activation_bytes_per_latent_pixel=56 * GB / 128**2),
    tiny={**qwenimage.FAMILY.tiny,
          # Half Qwen-Image's tiny VAE widths: the pipeline encodes every control at a megapixel (a preview's too),
          # 4.5 s instead of 9 on one CPU thread.
          "vae": {**qwenimage.FAMILY.tiny["vae"], "base_dim": 8, "dim_mult": [1, 2, 2, 2]},
          # The pipeline's processor, its image half at Pillow's with a small pixel budget (a few vision tokens).
          "processor": "trainer.models.qwen_vl_images:tiny_processor"},
)
