"""Qwen-Image-Edit (2509/2511): Qwen-Image's flow matching on before/after pairs, conditioned as
``QwenImageEditPlusPipeline`` conditions its transformer.

Two paths for the control image.  As latents: the same VAE normalisation as the target's, packed 2×2 into tokens that
follow the target's in the sequence, with ``img_shapes`` listing (1, rows, columns) of the target and then of each
control — the transformer's rotary embedding places each image by it, and 2511's ``zero_cond_t`` modulates the
controls' tokens at t = 0 by it; the output is read off the target's tokens.  As vision tokens: the control, resized
to the pipeline's condition size (384² pixels at its aspect ratio), goes into the instruction's chat prompt as
"Picture 1: <|vision_start|><|image_pad|><|vision_end|>…" through the pipeline's own ``encode_prompt`` — so the text
conditioning is the pair's, and the job caches it per pair (``Family.text_reads_controls``).

The text encoder sees the whole control *file* (as a person hands it to the pipeline), not the training crop: its
conditioning then depends on the caption and the control file's version only, so it can be cached per pair whatever
crop and flip a step draws; the control's latents follow the target's crop and flip, as they must to stay aligned.
"""

from __future__ import annotations

from typing import Any

import torch

from trainer.diffusion.engines import CONTROL_LATENTS, QwenImageEngine, pack_2x2, unpack_2x2
from trainer.diffusion.text import TextConditioning


class QwenEditEngine(QwenImageEngine):
    """Flow matching on Qwen-Image-Edit: the target's tokens then the controls', ``img_shapes`` for each image, and
    each instruction encoded with its pair's control images."""

    def encode_prompts(self, encoders, prompts, device, controls: list[list[Any]] | None = None):
        """Each prompt as the pipeline encodes it with ``controls[i]`` (its pair's control images, PIL, whole):
        resized to the pipeline's condition size and shown to Qwen2.5-VL as pictures before the instruction.
        Without controls (a sample prompt, the empty prompt): the instruction alone, as the pipeline with no image."""
        pipe = self._text_pipeline(encoders)
        rows = []
        for index, prompt in enumerate(prompts):
            images = self.condition_images(pipe, controls[index]) if controls is not None and controls[index] else None
            hidden, mask = pipe.encode_prompt([prompt], image=images, device=torch.device(device),
                                              max_sequence_length=self.family.max_sequence_length or 1024)
            rows.append(hidden[0] if mask is None else hidden[0][mask[0].bool()])
        return TextConditioning.from_sequences(rows)

    @staticmethod
    def condition_images(pipe: Any, pictures: list[Any]) -> list[Any]:
        """``pictures`` as the pipeline's call hands them to ``encode_prompt``: each resized to its condition size
        (384² pixels at the picture's aspect ratio, sides multiples of 32)."""
        from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus as edit_plus

        resized = []
        for picture in pictures:
            aspect = picture.width / picture.height
            width, height = edit_plus.calculate_dimensions(edit_plus.CONDITION_IMAGE_SIZE, aspect)
            resized.append(pipe.image_processor.resize(picture, height, width))
        return resized

    def edit_arguments(self, references, pictures, width, height):
        """The pair's control files, whole, as a person hands them to the pipeline: its text encoder then sees what
        training's did (the VAE half takes them at the pipeline's megapixel, as every use of the LoRA will)."""
        return {"image": pictures}

    def predict_batch(self, denoiser, noisy, sigma, text, extras):
        return self.predict_in_context(denoiser, noisy, sigma, text, extras.get(CONTROL_LATENTS, ()))

    def predict_in_context(self, denoiser, noisy: torch.Tensor, sigma: torch.Tensor, text: TextConditioning,
                           controls: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> torch.Tensor:
        """The velocity of ``noisy``'s tokens with each of ``controls`` (latents, unpacked) packed after them, as the
        pipeline's ``prepare_latents`` concatenates them, ``img_shapes`` listing every image's grid."""
        batch, _, height, width = noisy.shape
        tokens = [pack_2x2(noisy)] + [pack_2x2(control.to(noisy.dtype)) for control in controls]
        shapes = [(1, height // 2, width // 2)] + [(1, c.shape[-2] // 2, c.shape[-1] // 2) for c in controls]
        mask = None if text.mask is None else text.mask.long()
        out = denoiser(hidden_states=torch.cat(tokens, dim=1), timestep=sigma.to(noisy.dtype),
                       encoder_hidden_states=text.hidden, encoder_hidden_states_mask=mask,
                       img_shapes=[shapes] * batch, return_dict=False)[0]
        return unpack_2x2(out[:, : tokens[0].shape[1]], height, width)
