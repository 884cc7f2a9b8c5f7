"""``kamaal-train merge …``: fuse, merge and convert from the command line.

Every subcommand checks its inputs first and exits with code 2 and a message naming the problem
(a missing file, a LoRA for another model, an output that is also an input); outputs are written
atomically, so Ctrl-C never leaves a half-written file.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence

from trainer.errors import InputError

EPILOG = """examples:
  kamaal-train merge fuse-lora base/ style.safetensors --strength 0.8 --out-dir fused/ --out-file fused.safetensors
  kamaal-train merge loras a.safetensors b.safetensors --weights 0.7 0.5 --out ab.safetensors
  kamaal-train merge loras a.safetensors b.safetensors --rank 16 --out ab-r16.safetensors
  kamaal-train merge checkpoints A.safetensors B.safetensors --alpha 0.3 --out AB.safetensors
  kamaal-train merge checkpoints A.safetensors B.safetensors C.safetensors --alpha 1 --out A+B-C.safetensors
  kamaal-train merge checkpoints A/ B/ --alpha 0.5 --blocks "IN*=0.2,M00=0.5,OUT*=0.8" --out AB/
  kamaal-train merge convert-lora lora.safetensors lora-diffusers.safetensors --to diffusers
  kamaal-train merge convert-model model/ model.safetensors
"""

BLOCKS_HELP = ("per-block UNet weights replacing --alpha where given: NAME=VALUE pairs with globs, later ones "
               "winning, e.g. 'IN*=0.2,IN00=0,M00=0.5,OUT*=0.8'; or one number per block in the order BASE, IN00…, "
               "M00, OUT00… (26 for SD 1.x/2.x, 20 for SDXL). BASE = text encoders, VAE and the UNet's embeddings "
               "and final layers; INnn/OUTnn = the original checkpoints' input_blocks.nn/output_blocks.nn. "
               "Transformer families name their own blocks: 'transformer_blocks.*=0.3,single_transformer_blocks.*=0.7' "
               "(a Flux folder), 'double_blocks.*=…' (BFL's file); BASE = everything outside them")


class TerminalReporter:
    """Progress as lines on stderr: each new step once, a long step every tenth of the way.
    Ctrl-C is the cancel (KeyboardInterrupt)."""

    def __init__(self) -> None:
        self._step = ""
        self._tenth = -1

    def progress(self, done: int, total: int, message: str = "") -> None:
        step = re.sub(r"\d+", "#", message)  # "Merged 32 of 900 tensors" and "Merged 64 …" are one step
        tenth = 10 * done // total if total > 0 else 0
        if step != self._step or tenth > self._tenth:
            print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)
            self._step, self._tenth = step, tenth

    def log(self, message: str, level: str = "info") -> None:
        print(f"[{level}] {message}", file=sys.stderr, flush=True)

    def check_cancelled(self) -> None:
        pass


def _weights(values: list[float] | None, count: int, what: str) -> list[float]:
    if not values:
        return [1.0] * count
    if len(values) == 1:
        return values * count
    if len(values) != count:
        raise InputError(f"{what}: {len(values)} values for {count} LoRA(s); give one, or one per LoRA")
    return values


def cmd_fuse(args: argparse.Namespace) -> int:
    from trainer.merge.fuse import fuse_lora

    strengths = _weights(args.strength, len(args.loras), "--strength")
    summary = fuse_lora(args.model, list(zip(args.loras, strengths, strict=True)), output_dir=args.out_dir,
                        output_file=args.out_file, dtype=args.dtype, config_dir=args.config_dir,
                        reporter=TerminalReporter())
    from trainer.models.info import DISPLAY_NAME

    print(f"Fused {summary.modules} LoRA modules into the {DISPLAY_NAME[summary.architecture]} model.")
    for path in summary.outputs:
        print(f"Output: {path}")
    return 0


def cmd_loras(args: argparse.Namespace) -> int:
    from trainer.merge.lora_merge import merge_loras

    weights = _weights(args.weights, len(args.loras), "--weights")
    mode = "svd" if args.rank else "exact"
    summary = merge_loras(list(zip(args.loras, weights, strict=True)), args.out, mode=mode, rank=args.rank,
                          fmt=args.format, reporter=TerminalReporter())
    print(f"Merged {len(args.loras)} LoRA(s) ({mode}): {summary.modules} modules, rank up to {summary.rank}.")
    for note in summary.notes:
        print(note)
    if mode == "svd":
        print(f"Approximation error ‖ΔW − ΔW_k‖/‖ΔW‖: {summary.relative_error:.2%} overall, "
              f"worst {summary.worst_error:.2%} ({summary.worst_module})")
    print(f"Output: {summary.output}")
    return 0


def cmd_checkpoints(args: argparse.Namespace) -> int:
    from trainer.merge.checkpoints import merge_checkpoints

    if len(args.models) not in (2, 3):
        raise InputError(f"checkpoints: give two models (weighted sum) or three (add difference), "
                         f"got {len(args.models)}")
    method = args.method or ("add_difference" if len(args.models) == 3 else "weighted_sum")
    method = method.replace("-", "_")
    c = args.models[2] if len(args.models) == 3 else None
    if method == "weighted_sum" and c is not None:
        raise InputError("checkpoints: the weighted sum takes two models; a third is only for --method add-difference")
    summary = merge_checkpoints(args.models[0], args.models[1], args.out, alpha=args.alpha, c=c, method=method,
                                block_weights=args.blocks or "", dtype=args.dtype,
                                components="denoiser" if args.denoiser_only else "all", reporter=TerminalReporter())
    print(f"Merged {summary.tensors} tensors ({method.replace('_', ' ')}, α = {args.alpha:g}).")
    if args.blocks:
        print("Block weights: " + ", ".join(f"{k}={v:g}" for k, v in summary.block_weights.items()))
    print(f"Output: {summary.output}")
    return 0


def cmd_convert_lora(args: argparse.Namespace) -> int:
    from trainer.merge.convert import convert_lora

    print(f"Output: {convert_lora(args.source, args.out, to=args.to)}")
    return 0


def cmd_convert_model(args: argparse.Namespace) -> int:
    from trainer.merge.convert import convert_model

    out = convert_model(args.source, args.out, to=args.to, dtype=args.dtype, config_dir=args.config_dir,
                        text_encoder_files=args.text_encoder_file or [], vae_file=args.vae_file or "",
                        reporter=TerminalReporter())
    print(f"Output: {out}")
    return 0


DESCRIPTION = ("Merge models: bake a LoRA into a base model, combine LoRAs, blend checkpoints, convert formats. "
               "Inputs are never overwritten; outputs carry metadata naming their sources and weights.")


def add_merge_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``merge`` and its subcommands to ``kamaal-train``'s subcommands."""
    parser = commands.add_parser("merge", help="merge models: fuse-lora, loras, checkpoints, convert-lora, "
                                               "convert-model", description=DESCRIPTION, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_subcommands(parser)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The merge tool on its own (``python -m trainer.merge.cli``, tests)."""
    parser = argparse.ArgumentParser(prog="kamaal-train merge", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_subcommands(parser)
    return parser


def _add_subcommands(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="merge_command", required=True, metavar="COMMAND")

    fuse = commands.add_parser("fuse-lora", help="bake LoRA(s) into a base model (W + strength·ΔW)",
                               description="Bake one or more LoRAs (kohya or diffusers format) into a base model "
                                           "and save it as a diffusers folder, a single-file checkpoint, or both. "
                                           "Transformer families (Flux.1, Z-Image, Qwen-Image, SD 3.5, …): a diffusers "
                                           "folder (kohya/ComfyUI or diffusers LoRA), or the family's own single file, "
                                           "fused into a file of the same layout (--out-file); precision as stored.")
    fuse.add_argument("model", metavar="MODEL", help="base model: a diffusers folder or a single .safetensors/.ckpt")
    fuse.add_argument("loras", metavar="LORA", nargs="+", help="LoRA .safetensors file(s)")
    fuse.add_argument("--strength", type=float, nargs="+", metavar="S",
                      help="strength of each LoRA (one for all, or one per LoRA; default 1)")
    fuse.add_argument("--out-dir", metavar="DIR", help="write the fused model as a diffusers folder here")
    fuse.add_argument("--out-file", metavar="FILE.safetensors",
                      help="write the fused model as one checkpoint (Automatic1111/ComfyUI layout) here")
    _dtype_and_configs(fuse)
    fuse.set_defaults(handler=interruptible(cmd_fuse))

    loras = commands.add_parser("loras", help="merge LoRAs into one (exact, or compact with --rank)",
                                description="Merge LoRAs with weights into one LoRA. Without --rank the merge is "
                                            "exact: ranks are stacked and the result equals applying them all. With "
                                            "--rank the sum is cut to that rank by SVD and the error is reported.")
    loras.add_argument("loras", metavar="LORA", nargs="+", help="LoRA .safetensors files (kohya or diffusers)")
    loras.add_argument("--weights", type=float, nargs="+", metavar="W",
                       help="weight of each LoRA (one for all, or one per LoRA; default 1)")
    loras.add_argument("--rank", type=int, help="target rank of a compact (SVD) merge")
    loras.add_argument("--format", choices=["kohya", "diffusers"],
                       help="file format of the result (default: for SD 1.x/2.x/SDXL kohya, which Automatic1111 and "
                            "ComfyUI load; for the transformer families the inputs' own layout: diffusers, or kohya = "
                            "the original layout ComfyUI and kohya use)")
    loras.add_argument("--out", required=True, metavar="FILE.safetensors", help="the merged LoRA")
    loras.set_defaults(handler=interruptible(cmd_loras))

    checkpoints = commands.add_parser(
        "checkpoints", help="merge checkpoints: weighted sum (2 models) or add difference (3)",
        description="Weighted sum A·(1−α) + B·α of two models, or add difference A + (B − C)·α of three. Both "
                    "single files or both diffusers folders, of the same family (SD 1.x/2.x/SDXL, or a transformer "
                    "family: Flux.1, Z-Image, Qwen-Image, SD 3.5, …, as diffusers folders or the family's own "
                    "transformer file); checked before anything is written. Works tensor by tensor, so memory stays "
                    "small.")
    checkpoints.add_argument("models", metavar="MODEL", nargs="+", help="A B [C]: models to merge")
    checkpoints.add_argument("--alpha", type=float, default=0.5, help="α (default 0.5)")
    checkpoints.add_argument("--method", choices=["weighted-sum", "add-difference"],
                             help="default: weighted-sum for two models, add-difference for three")
    checkpoints.add_argument("--blocks", metavar="SPEC", help=BLOCKS_HELP)
    checkpoints.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], help="store the result in this precision "
                             "(default: as model A)")
    checkpoints.add_argument("--denoiser-only", action="store_true",
                             help="merge only the UNet or transformer; model A's text encoders and VAE are kept as "
                                  "they are (default: every component; one identical in all models is copied)")
    checkpoints.add_argument("--out", required=True, metavar="PATH",
                             help="a .safetensors file for single files, a folder for diffusers folders")
    checkpoints.set_defaults(handler=interruptible(cmd_checkpoints))

    convert_lora = commands.add_parser("convert-lora", help="convert a LoRA between kohya and diffusers format",
                                       description="Convert a LoRA between the kohya format (Automatic1111, ComfyUI) "
                                                   "and diffusers' (pipe.load_lora_weights). The effect is unchanged.")
    convert_lora.add_argument("source", metavar="LORA", help="the LoRA to convert")
    convert_lora.add_argument("out", metavar="OUT.safetensors", help="where to write the converted LoRA")
    convert_lora.add_argument("--to", choices=["kohya", "diffusers"], help="target format (default: the other one)")
    convert_lora.set_defaults(handler=interruptible(cmd_convert_lora))

    convert_model = commands.add_parser(
        "convert-model", help="convert a model between a diffusers folder and a single file",
        description="Convert a diffusers folder to one .safetensors checkpoint in the original layout "
                    "(Automatic1111, ComfyUI), or a single file to a diffusers folder. Transformer families (Flux.1, "
                    "SD 3.5, Qwen-Image, …): the family's own file, as a full run writes it (BFL's transformer file "
                    "for Flux, Stability's whole file for SD 3.5); a file holding only the transformer needs its text "
                    "encoders and VAE (--text-encoder-file, --vae-file, or ComfyUI's folders beside it).")
    convert_model.add_argument("source", metavar="MODEL", help="a diffusers folder or a single checkpoint file")
    convert_model.add_argument("out", metavar="OUT", help="OUT.safetensors or an output folder")
    convert_model.add_argument("--to", choices=["single-file", "diffusers"], help="target form (default: the other)")
    convert_model.add_argument("--text-encoder-file", action="append", metavar="FILE",
                               help="a text encoder file for a transformer-only single file (repeat for each; default: "
                                    "found in ComfyUI's models/clip or models/text_encoders beside it)")
    convert_model.add_argument("--vae-file", metavar="FILE", help="the VAE file for a transformer-only single file "
                                                                   "(default: found in ComfyUI's models/vae beside it)")
    _dtype_and_configs(convert_model)
    convert_model.set_defaults(handler=interruptible(cmd_convert_model))


def _dtype_and_configs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", choices=["auto", "fp32", "fp16", "bf16"], default="auto",
                        help="precision of the result (default auto: as the base model is stored)")
    parser.add_argument("--config-dir", metavar="DIR",
                        help="diffusers configs for a non-standard single-file model (default: the shipped ones)")


def interruptible(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Ctrl-C ends a merge with exit code 130; the atomic writers have already removed their temp files."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except KeyboardInterrupt:
            print("Cancelled; the output being written was discarded.", file=sys.stderr)
            return 130

    return run


def merge_main(argv: Sequence[str]) -> int:
    """Run ``kamaal-train merge ARGV`` on its own; bad input raises ``InputError``."""
    args = build_parser().parse_args(list(argv))
    return int(args.handler(args))
