"""The guide's toy network: three dense layers learning a synthetic task, trained from scratch, by freezing
layers of a pretrained one, or through a LoRA on its hidden layer.  Not a diffusion model: no pipeline, no text
encoders."""

from trainer.families.base import Family, MemoryFacts

FAMILY = Family(
    name="toy",
    display_name="Toy network",
    modes=("toy", "frozen", "lora"),
    kind="toy",
    job="trainer.jobs.toy:ToyJob",
    lora_target_modules=("hidden_layer",),
    memory=MemoryFacts(reference_parameters={"network": 10 * 50 + 50 + 50 * 50 + 50 + 50 + 1}),
)
