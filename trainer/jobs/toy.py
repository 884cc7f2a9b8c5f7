"""The guide's first lesson, trainable: a three-layer network learns a synthetic regression task.

``ToyNet`` is the guide's ``SimpleModel`` (Linear 10→50, 50→50, 50→1, sigmoid after the first
two).  The task is fixed by ``toy.task_seed``: inputs uniform in [0, 1]^10 and a smooth
nonlinear target, standardised, with a held-out split.  In ``frozen`` mode the network starts
from ``model.path`` (a toy.safetensors from an earlier run) and only the blocks named in
``frozen.trainable`` learn — the guide's fine-tuning section, on the task asked the other way round
(``toy.shifted``).  In ``lora`` mode the network is frozen and a rank-``lora.rank`` adapter on each layer of
``lora.target_modules`` learns (the guide's LoRA section; the Learn page's lessons 4 and 6 read the adapters
this writes).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from trainer.errors import InputError
from trainer.freezing import apply_trainable_patterns
from trainer.jobs.base import StepResult, TrainingJob
from trainer.optim import build_scheduler
from trainer.protocol import LayerSnapshot, LayerWeights

INPUT_FEATURES = 10
HIDDEN = 50


class ToyNet(nn.Module):
    """The guide's SimpleModel, layer names and all."""

    def __init__(self) -> None:
        super().__init__()
        self.input_layer = nn.Linear(INPUT_FEATURES, HIDDEN)
        self.hidden_layer = nn.Linear(HIDDEN, HIDDEN)
        self.output_layer = nn.Linear(HIDDEN, 1)
        self.activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.input_layer(x))
        x = self.activation(self.hidden_layer(x))
        return self.output_layer(x)

    def layers(self) -> list[tuple[str, nn.Linear | LoraLinear]]:
        return [("input_layer", self.input_layer), ("hidden_layer", self.hidden_layer),
                ("output_layer", self.output_layer)]


class LoraLinear(nn.Module):
    """A frozen Linear plus a trained low-rank change: ``W·x + b + (α/r)·B·A·x``, the Learn page's formula.

    A few lines of our own rather than peft: the lessons show exactly these matrices, and importing peft costs
    the toy's subprocess seconds.  Initialised as peft does (A Kaiming-uniform, B zero), so step 0 is the
    pretrained network exactly; ``lora_A``/``lora_B`` keep peft's names in the state dict and the export.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora_A = nn.Linear(base.in_features, rank, bias=False)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.alpha, self.scaling = alpha, alpha / rank
        self.in_features, self.out_features = base.in_features, base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scaling * self.lora_B(self.lora_A(x))

    @property
    def weight(self) -> torch.Tensor:
        """The weight the layer acts with, ``W + (α/r)·B·A`` (what the weights view shows)."""
        return self.base.weight + self.scaling * (self.lora_B.weight @ self.lora_A.weight)

    @property
    def bias(self) -> torch.Tensor:
        return self.base.bias


def attach_lora(model: ToyNet, targets: list[str], rank: int, alpha: float) -> None:
    """Freeze ``model`` and put a LoRA on each named layer; errors name ``lora.target_modules``."""
    names = [name for name, _ in model.layers()]
    unknown = [target for target in targets if target not in names]
    if unknown or not targets:
        raise InputError(f"lora.target_modules: the toy network's layers are {', '.join(names)}; "
                         f"got {', '.join(unknown) or 'none'}")
    model.requires_grad_(False)
    for target in targets:
        setattr(model, target, LoraLinear(getattr(model, target), rank, alpha))


def lora_tensors(model: ToyNet) -> dict[str, torch.Tensor]:
    """The adapters alone, as a LoRA file holds them: ``LAYER.lora_A.weight`` (r × in), ``LAYER.lora_B.weight``
    (out × r) and ``LAYER.alpha`` (a scalar, as kohya's files carry it)."""
    tensors = {}
    for name, layer in model.layers():
        if isinstance(layer, LoraLinear):
            tensors[f"{name}.lora_A.weight"] = layer.lora_A.weight.detach().clone()
            tensors[f"{name}.lora_B.weight"] = layer.lora_B.weight.detach().clone()
            tensors[f"{name}.alpha"] = torch.tensor(layer.alpha, dtype=torch.float32)
    return tensors


def make_task(samples: int, task_seed: int, noise: float, holdout_fraction: float, shifted: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_x, train_y, heldout_x, heldout_y) of the synthetic task; same seed, same data.

    ``shifted`` asks the same question the other way round (1 − 2·y) on the same inputs and split: a network
    trained on the plain task already has the features for it, so its output layer alone relearns it quickly,
    where a network trained from scratch has to find those features first (the guide's fine-tuning lesson).
    """
    generator = torch.Generator().manual_seed(task_seed)
    x = torch.rand(samples, INPUT_FEATURES, generator=generator)
    # A smooth target mixing every feature: a sum of sines plus a pairwise interaction.
    frequency = 1.0 + 3.0 * torch.rand(INPUT_FEATURES, generator=generator)
    phase = 2 * math.pi * torch.rand(INPUT_FEATURES, generator=generator)
    amplitude = torch.randn(INPUT_FEATURES, generator=generator)
    y = (amplitude * torch.sin(frequency * x + phase)).sum(dim=1, keepdim=True)
    y = y + 2.0 * (x[:, :1] - 0.5) * (x[:, 1:2] - 0.5)
    y = (y - y.mean()) / y.std()
    y = y + noise * torch.randn(y.shape, generator=generator)
    if shifted:
        y = 1 - 2 * y
    order = torch.randperm(samples, generator=generator)
    heldout = max(1, round(samples * holdout_fraction))
    test_idx, train_idx = order[:heldout], order[heldout:]
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


def load_toy_weights(path: str) -> dict[str, torch.Tensor]:
    """Weights of a toy network saved by an earlier run; errors name the file and the field."""
    file = Path(path)
    if not file.exists():
        raise InputError(f"model.path: file not found: {file}")
    try:
        weights = load_file(file)
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"model.path: {file} is not a readable .safetensors file ({exc})") from None
    expected = {name: tuple(t.shape) for name, t in ToyNet().state_dict().items()}
    found = {name: tuple(t.shape) for name, t in weights.items()}
    if found != expected:
        missing = sorted(set(expected) - set(found))
        raise InputError(f"model.path: {file} does not hold the toy network's weights "
                         f"(missing or mismatched: {', '.join(missing) or 'shapes differ'})")
    return weights


class ToyJob(TrainingJob):
    def setup(self) -> None:
        cfg, toy = self.config, self.config.toy
        # 50×50 matrices: thread hand-offs cost more than they save, and one thread keeps
        # the toy from fighting the GUI (or a second run) for the cores.
        torch.set_num_threads(1)
        torch.manual_seed(cfg.training.seed)
        self.model = ToyNet()
        if cfg.model.path:
            self.model.load_state_dict(load_toy_weights(cfg.model.path))
            self.log.info("Started from the weights in %s", cfg.model.path)
        if cfg.mode == "frozen":
            trainable = apply_trainable_patterns(self.model, cfg.frozen.trainable)
            frozen = [name for name, layer in self.model.layers() if not layer.weight.requires_grad]
            self.log.info("Frozen layers: %s; training %d parameters", ", ".join(frozen) or "none", trainable)
        if cfg.mode == "lora":
            if cfg.lora.adapter != "lora":
                raise InputError(f"lora.adapter: the toy network trains plain LoRA only, got {cfg.lora.adapter}")
            if cfg.lora.dropout:
                raise InputError(f"lora.dropout: the toy network's LoRA has no dropout; set 0, got {cfg.lora.dropout}")
            attach_lora(self.model, cfg.lora.target_modules, cfg.lora.rank, cfg.lora.alpha)
            self.log.info("LoRA rank %d (alpha %g) on %s; training %d parameters", cfg.lora.rank, cfg.lora.alpha,
                          ", ".join(cfg.lora.target_modules),
                          sum(p.numel() for p in self.model.parameters() if p.requires_grad))
        self.train_x, self.train_y, self.heldout_x, self.heldout_y = make_task(
            toy.samples, toy.task_seed, toy.noise, toy.holdout_fraction, toy.shifted)
        self.batch_generator = torch.Generator().manual_seed(cfg.training.seed)
        self.order = torch.randperm(len(self.train_x), generator=self.batch_generator)
        self.cursor = 0
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(parameters, lr=cfg.training.learning_rate,
                                           weight_decay=cfg.training.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, cfg.training)
        self.loss_fn = nn.MSELoss()

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        size = min(self.config.training.batch_size, len(self.train_x))
        if self.cursor + size > len(self.order):  # new epoch, new shuffle
            self.order = torch.randperm(len(self.train_x), generator=self.batch_generator)
            self.cursor = 0
        index = self.order[self.cursor:self.cursor + size]
        self.cursor += size
        return self.train_x[index], self.train_y[index]

    def train_step(self, step: int) -> StepResult:
        x, y = self._next_batch()
        self.model.train()
        loss = self.loss_fn(self.model(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        if self.config.toy.step_delay_ms:
            time.sleep(self.config.toy.step_delay_ms / 1000)
        return StepResult(loss=float(loss.detach()))

    def current_lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    @torch.no_grad()
    def evaluate(self) -> float:
        self.model.eval()
        return float(self.loss_fn(self.model(self.heldout_x), self.heldout_y))

    def preview_every(self) -> int:
        return self.config.toy.weights_every

    @torch.no_grad()
    def preview(self, step: int, final: bool = False) -> None:
        snapshots = tuple(
            LayerSnapshot(
                name=name,
                shape=(layer.out_features, layer.in_features),
                weight=tuple(layer.weight.flatten().tolist()),
                bias=tuple(layer.bias.tolist()),
                frozen=not any(p.requires_grad for p in layer.parameters()),
            )
            for name, layer in self.model.layers()
        )
        self.sink.emit(LayerWeights(step=step, layers=snapshots))

    def checkpoint_weights(self) -> dict[str, torch.Tensor]:
        return {name: tensor.detach().clone() for name, tensor in self.model.state_dict().items()}

    def training_state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "batch_rng": self.batch_generator.get_state(),
            "order": self.order.clone(),
            "cursor": self.cursor,
        }

    def load_state(self, weights: dict[str, torch.Tensor], training_state: dict[str, Any]) -> None:
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(training_state["optimizer"])
        self.scheduler.load_state_dict(training_state["scheduler"])
        torch.set_rng_state(training_state["torch_rng"])
        self.batch_generator.set_state(training_state["batch_rng"])
        self.order = training_state["order"]
        self.cursor = int(training_state["cursor"])

    def export(self, output_dir: Path) -> list[Path]:
        target = output_dir / f"{self.config.output.run_name}.safetensors"
        staging = target.with_name(f".{target.name}.tmp")
        metadata = {"kamaal.architecture": "toy", "kamaal.config": json.dumps(self.config.to_dict())}
        if self.config.mode == "lora":
            metadata["kamaal.adapter"] = "lora"
        # A LoRA run's result is its adapters (the base network is the file it started from).
        weights = lora_tensors(self.model) if self.config.mode == "lora" else self.checkpoint_weights()
        with self.run.writing_outputs(sum(t.nbytes for t in weights.values()) + 64 * 1024):  # full disk: refused
            try:
                output_dir.mkdir(parents=True, exist_ok=True)
                save_file(weights, staging, metadata=metadata)
                staging.replace(target)
            except BaseException:
                staging.unlink(missing_ok=True)
                raise
        return [target]
