"""One real layer per well-known family, for the Learn page's LoRA lesson (light: no torch).

The lesson sets a LoRA's size, ``r·(d_in + d_out)``, against the layer's own ``d_in·d_out`` on layers
people train every day, and the whole adapter (``MemoryFacts.lora_per_rank``) against the whole
denoiser (``MemoryFacts.reference_parameters``).  The widths here come from the families' bundled
configs (``resources/model_configs``); tests/learn checks them against those files.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainer.families import family


@dataclass(frozen=True)
class ExampleLayer:
    family: str
    layer: str  # the module's name in the diffusers model
    d_in: int
    d_out: int
    config: str  # resources/model_configs/<config>/<component>/config.json gives the widths
    component: str  # the denoiser: "unet" or "transformer"

    @property
    def display_name(self) -> str:
        return family(self.family).display_name

    @property
    def model_parameters(self) -> int:
        """The reference denoiser's parameter count (the registry's memory facts)."""
        return family(self.family).memory.reference_parameters[self.component]

    def lora_model_parameters(self, rank: int) -> int:
        """A whole LoRA's parameters at ``rank`` on the family's default targets (the registry's memory facts)."""
        return family(self.family).memory.lora_per_rank * rank


EXAMPLE_LAYERS = (
    # The deepest UNet block's cross-attention key: text features (768 wide) into image features (1280).
    ExampleLayer("sd15", "mid_block.attentions.0.transformer_blocks.0.attn2.to_k", 768, 1280, "sd15", "unet"),
    # The same layer in SDXL, where the two text encoders' features are 2048 wide together.
    ExampleLayer("sdxl", "mid_block.attentions.0.transformer_blocks.0.attn2.to_k", 2048, 1280, "sdxl-base", "unet"),
    # A double-stream block's query: 24 heads × 128 = 3072 wide.
    ExampleLayer("flux", "transformer_blocks.0.attn.to_q", 3072, 3072, "flux-dev", "transformer"),
)
