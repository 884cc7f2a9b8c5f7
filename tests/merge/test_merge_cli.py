"""``kamaal-train merge …``: the subcommands run, explain themselves, and refuse bad input with exit 2."""

from __future__ import annotations

from trainer.cli import main
from trainer.merge.lora_files import read_lora


def test_help_lists_every_subcommand(capsys):
    try:
        main(["merge", "--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
    text = capsys.readouterr().out
    for command in ("fuse-lora", "loras", "checkpoints", "convert-lora", "convert-model", "examples:"):
        assert command in text


def test_loras_svd_merge_reports_its_error(tmp_path, capsys, lora_1, lora_2):
    code = main(["merge", "loras", str(lora_1), str(lora_2), "--weights", "0.5", "1", "--rank", "2",
                 "--out", str(tmp_path / "m.safetensors")])
    assert code == 0
    out = capsys.readouterr().out
    assert "Approximation error" in out and "Output:" in out
    assert max(m.rank for m in read_lora(tmp_path / "m.safetensors").modules.values()) == 2


def test_bad_input_exits_2_with_a_named_reason(tmp_path, capsys, sd15_a, sdxl_a, lora_1):
    assert main(["merge", "checkpoints", str(sd15_a), str(sdxl_a), "--out", str(tmp_path / "x")]) == 2
    assert "is SDXL but model A is Stable Diffusion 1.x" in capsys.readouterr().err
    assert main(["merge", "convert-lora", str(lora_1), str(lora_1)]) == 2
    assert "is also an input" in capsys.readouterr().err
    assert main(["merge", "loras", str(lora_1), str(tmp_path / "missing.safetensors"), "--out",
                 str(tmp_path / "y.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "LoRA 2:" in err and "does not exist" in err
