"""Block swapping (``model.blocks_to_swap``): the frozen weights of some of the denoiser's blocks wait in the
computer's memory and come to the GPU only while their block runs — for cards too small even for an nf4 base.

Which blocks: the first N of the family's repeated blocks (``Family.blocks``, in the order the forward pass
runs them).  What moves: each block's *frozen* leaf modules (a quantized base layer moves with its scales, by
its library's own ``.to``); trainable parameters (the LoRA adapters, a frozen-layer run's chosen blocks) stay on
the GPU, where their gradients and optimizer state live.  A forward pre-hook brings a block in, a forward hook
sends it back.  Gradient checkpointing is required (the config says so): without it autograd would keep every
block's weights alive for the backward pass anyway; with it, a block's forward runs again during backward —
the hooks fire again — so one swapped block's weights are on the GPU at a time.

The moves are synchronous copies: slower than streams and pinned buffers (what a later speed pass can add),
simple and correct.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def swappable_blocks(denoiser: torch.nn.Module, containers: tuple[str, ...]) -> list[torch.nn.Module]:
    """The denoiser's repeated blocks in forward order: every child of each container (a ModuleList), or the
    container itself where it is one block (SD's ``mid_block``)."""
    blocks: list[torch.nn.Module] = []
    for name in containers:
        container = getattr(denoiser, name, None)
        if isinstance(container, torch.nn.ModuleList):
            blocks += list(container)
        elif isinstance(container, torch.nn.Module):
            blocks.append(container)
    return blocks


def frozen_leaves(block: torch.nn.Module) -> list[torch.nn.Module]:
    """Modules holding tensors of their own, none of them trained: what may leave the GPU."""
    leaves = []
    for module in block.modules():
        own = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        if own and not any(getattr(t, "requires_grad", False) for t in own):
            leaves.append(module)
    return leaves


def _move(module: torch.nn.Module, device: torch.device | str) -> None:
    module.to(device)


class BlockSwapper:
    """Keeps ``count`` blocks' frozen weights on ``offload`` (the CPU) and brings each to ``onload`` while it
    runs.  ``move(module, device)`` is the copy (replaceable in tests).  ``remove()`` takes the hooks away and
    leaves every block on ``onload``."""

    def __init__(self, blocks: list[torch.nn.Module], count: int, onload: torch.device | str,
                 offload: torch.device | str = "cpu",
                 move: Callable[[torch.nn.Module, torch.device | str], None] = _move) -> None:
        self.blocks = blocks[:count]
        self.onload, self.offload, self.move = onload, offload, move
        self.leaves = [frozen_leaves(block) for block in self.blocks]
        self.handles: list = []
        self.resident: list[list[torch.nn.Module]] = []  # the swapped blocks on ``onload`` now
        for block, leaves in zip(self.blocks, self.leaves, strict=True):
            for leaf in leaves:
                self.move(leaf, self.offload)
            self.handles.append(block.register_forward_pre_hook(self._bring(leaves)))
            self.handles.append(block.register_forward_hook(self._send(leaves)))

    def _bring(self, leaves: list[torch.nn.Module]):
        def hook(_module, _args):
            # A block recomputed during backward may never reach its forward hook (checkpointing stops the
            # recomputation once it has what backward needs): whatever block is still here goes back now — its
            # backward is done, since backward recomputes the blocks last to first.
            for resident in self.resident:
                if resident is not leaves:
                    self._place(resident, self.offload)
            self._place(leaves, self.onload)
        return hook

    def _send(self, leaves: list[torch.nn.Module]):
        def hook(_module, _args, _output):
            self._place(leaves, self.offload)
        return hook

    def _place(self, leaves: list[torch.nn.Module], device: torch.device | str) -> None:
        for leaf in leaves:
            self.move(leaf, device)
        here = any(leaves is resident for resident in self.resident)
        if device == self.onload and not here:
            self.resident.append(leaves)
        elif device != self.onload and here:
            self.resident = [resident for resident in self.resident if resident is not leaves]

    @property
    def swapped_parameters(self) -> int:
        return sum(p.numel() for leaves in self.leaves for leaf in leaves for p in leaf.parameters(recurse=False))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []
        for leaves in self.leaves:
            for leaf in leaves:
                self.move(leaf, self.onload)
