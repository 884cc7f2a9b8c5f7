"""The Learn page's lessons: each experiment, driven headless, shows what its lesson claims."""

from __future__ import annotations

import json

import numpy as np
import pytest

from desktop_app import paths
from desktop_app.learn.toy_math import ToyWeights, forward, lora_parameters, sigmoid
from trainer.families.example_layers import EXAMPLE_LAYERS

PRETRAINED = paths.resources_dir() / "models" / "toy-pretrained.safetensors"


@pytest.fixture
def network() -> ToyWeights:
    return ToyWeights.load(PRETRAINED)


def test_the_numpy_network_is_the_trainers_toy_network(network):
    """The sliders' numpy forward pass computes what the trainer's ToyNet computes with the same weights."""
    import torch
    from safetensors.torch import load_file

    from trainer.jobs.toy import ToyNet

    net = ToyNet()
    net.load_state_dict(load_file(PRETRAINED))
    inputs = np.random.default_rng(0).random((5, 10))
    with torch.no_grad():
        expected = net(torch.tensor(inputs, dtype=torch.float32)).numpy()[:, 0]
    got = [forward(network, x).output for x in inputs]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_lesson_1_sliders_move_the_neuron_and_the_output_by_the_right_amount(qtbot, network):
    from desktop_app.learn.neuron_lesson import FEATURE, NEURON, NeuronLesson

    lesson = NeuronLesson(network)
    qtbot.addWidget(lesson)
    before = lesson.result
    z = before.z["input_layer"][NEURON]
    lesson.bias.set_value(lesson.bias.value() + 1.5)  # the slider, as a person moves it
    after = lesson.result
    assert after.z["input_layer"][NEURON] == pytest.approx(z + 1.5, abs=1e-9)
    assert after.activations["input_layer"][NEURON] == pytest.approx(sigmoid(z + 1.5), abs=1e-12)
    others = np.arange(50) != NEURON
    assert np.array_equal(after.z["input_layer"][others], before.z["input_layer"][others])  # only that neuron
    assert after.output != before.output
    x0 = lesson.input.value()
    lesson.weight.set_value(lesson.weight.value() - 2.0)
    assert lesson.result.z["input_layer"][NEURON] == pytest.approx(z + 1.5 - 2.0 * x0, abs=1e-9)
    lesson.input.set_value(0.9)
    x = np.linspace(0.2, 0.8, 10)
    x[FEATURE] = 0.9
    assert lesson.result.output == pytest.approx(forward(lesson.network(), x).output, abs=1e-12)
    assert "σ(z)" in lesson.formula.text() and f"{lesson.result.output:+.4f}" in lesson.output.text()
    lesson.reset_button.click()
    assert lesson.result.output == pytest.approx(before.output, abs=1e-12)


def test_lesson_4_lora_counts_follow_the_formula_and_scale_0_is_the_base_model(qtbot, network):
    from desktop_app.learn.lora_lesson import LAYER, LoraLesson

    lesson = LoraLesson(network)
    qtbot.addWidget(lesson)
    trained = lesson.adapter
    assert (trained.b.shape, trained.a.shape) == ((50, 8), (8, 50))  # the shipped toy-lora: rank 8
    assert trained.b.size + trained.a.size == lora_parameters(50, 50, 8) == 8 * (50 + 50)
    for rank in (1, 8, 32):
        lesson.rank.set_value(rank)
        assert f"= {rank * 100} numbers" in lesson.counts.text()
        assert lesson.rank.number.text() == str(rank)  # a count reads as one: "4", not "4.00"
        sd15 = lesson.table.item(0, 2).text()
        assert sd15.endswith(f"({rank * (768 + 1280) / (768 * 1280):.2%})"), sd15
        change = lesson.adapted_network().weights[LAYER] - network.weights[LAYER]
        assert np.linalg.matrix_rank(change) == min(rank, 8)  # below 8: the adapter's strongest directions
    # From the trained rank up, the layer is the file's W + (α/r)·B·A exactly.
    assert np.array_equal(lesson.adapted_network().weights[LAYER], network.weights[LAYER] + trained.delta())
    lesson.scale.set_value(0.0)
    base, adapted = lesson.outputs()
    assert adapted == base  # exactly: W + 0·(α/r)·B·A is W
    assert np.array_equal(lesson.adapted_network().weights[LAYER], network.weights[LAYER])
    lesson.scale.set_value(1.0)
    one = lesson.adapted_network().weights[LAYER] - network.weights[LAYER]
    lesson.scale.set_value(2.0)
    two = lesson.adapted_network().weights[LAYER] - network.weights[LAYER]
    np.testing.assert_allclose(two, 2 * one, rtol=1e-12, atol=1e-12)  # the scale multiplies the change
    assert lesson.outputs()[1] != base


def test_the_numpy_lora_is_the_trainers_adapted_network(network):
    """Lessons 4 and 6 apply the shipped LoRA files in numpy; the trainer's own LoRA layers, loaded with the same
    file, compute the same outputs."""
    import torch
    from safetensors.torch import load_file

    from desktop_app.learn.toy_math import load_toy_lora
    from trainer.jobs.toy import ToyNet, attach_lora

    for name in ("toy-lora-shifted.safetensors", "toy-lora-task1.safetensors"):
        file = PRETRAINED.parent / name
        adapter = load_toy_lora(file)["hidden_layer"]
        net = ToyNet()
        net.load_state_dict(load_file(PRETRAINED))
        attach_lora(net, ["hidden_layer"], adapter.rank, adapter.alpha)
        tensors = load_file(file)
        net.hidden_layer.lora_A.weight.data = tensors["hidden_layer.lora_A.weight"]
        net.hidden_layer.lora_B.weight.data = tensors["hidden_layer.lora_B.weight"]
        inputs = np.random.default_rng(1).random((5, 10))
        with torch.no_grad():
            expected = net(torch.tensor(inputs, dtype=torch.float32)).numpy()[:, 0]
        adapted = network.with_weight("hidden_layer", network.weights["hidden_layer"] + adapter.delta())
        np.testing.assert_allclose([forward(adapted, x).output for x in inputs], expected, rtol=0, atol=1e-4)
        assert abs(forward(adapted, inputs[0]).output - forward(network, inputs[0]).output) > 0.1  # it does change


def test_lesson_4_real_layers_have_the_widths_of_the_bundled_configs():
    """The LoRA table's real layers: widths checked against the families' own model configs."""
    configs = paths.resources_dir() / "model_configs"
    for example in EXAMPLE_LAYERS:
        config = json.loads((configs / example.config / example.component / "config.json").read_text())
        if example.component == "unet":  # the mid block's cross-attention key: text width in, deepest width out
            assert (example.d_in, example.d_out) == (config["cross_attention_dim"], config["block_out_channels"][-1])
        else:  # a transformer block's query: heads × head width, in and out
            width = config["num_attention_heads"] * config["attention_head_dim"]
            assert (example.d_in, example.d_out) == (width, width)
        assert example.model_parameters > 100 * example.lora_model_parameters(16)


def test_lesson_6_merge_slider_ends_are_each_lora_exactly_and_add_difference_adds_what_was_taught(qtbot, network):
    from desktop_app.learn.merge_lesson import LAYER, PROBE_INPUT, MergeLesson

    lesson = MergeLesson(network)
    qtbot.addWidget(lesson)
    for weight, index in ((0.0, 0), (1.0, 1)):
        lesson.blend.set_value(weight)
        merged = lesson.blended_network()
        assert np.array_equal(merged.weights[LAYER], lesson.lora_network(index).weights[LAYER])
        assert forward(merged, PROBE_INPUT).output == forward(lesson.lora_network(index), PROBE_INPUT).output
    lesson.blend.set_value(0.5)
    assert not np.array_equal(lesson.blended_network().weights[LAYER], lesson.lora_network(0).weights[LAYER])
    lesson.multiplier.set_value(0.0)
    assert np.array_equal(lesson.difference_network().weights[LAYER], lesson.lora_network(1).weights[LAYER])
    lesson.multiplier.set_value(1.0)
    both = network.weights[LAYER] + lesson.deltas[0] + lesson.deltas[1]
    np.testing.assert_allclose(lesson.difference_network().weights[LAYER], both, rtol=0, atol=1e-12)


def test_lesson_5_shows_the_emblem_in_the_instance_pictures_and_not_in_the_class_pictures(qtbot):
    """The DreamBooth lesson's two rows, read by the shapes demo's own judge: the rare word's pictures hold
    the emblem, the class pictures (prior preservation) hold none.  That training teaches the emblem (judged
    after, not before) and keeps the class is tests/shapes/test_learning.py's slow test of the demo preset."""
    from PIL import Image
    from PySide6.QtWidgets import QLabel

    from desktop_app.learn.dreambooth_lesson import DreamBoothLesson
    from trainer.shapes.judge import EMBLEM, read_image

    lesson = DreamBoothLesson()
    qtbot.addWidget(lesson)
    demo = paths.resources_dir() / "demo"
    instance = sorted((demo / "dataset").glob("*.png"))[:6]
    classes = sorted((demo / "class_images").glob("*.png"))[:6]
    def pictures(row) -> int:
        return sum(not label.pixmap().isNull() for label in row.findChildren(QLabel))

    assert (pictures(lesson.instance), pictures(lesson.classes)) == (len(instance), len(classes)) == (6, 6)
    assert all(read_image(Image.open(p)).shape == EMBLEM for p in instance)
    assert not any(read_image(Image.open(p)).shape == EMBLEM for p in classes)


def test_lesson_5_demo_run_judges_its_samples_before_and_after(qtbot):
    """The demo run's wiring: its config is the demo preset sampled before and after, with prior preservation as
    the checkbox says; its samples are read by the judge, one line per prompt, and summed up with how far "a shape"
    moved from before.  The real runs: tests/gui/test_learn_runs.py."""
    from desktop_app.learn.dreambooth_lesson import DreamBoothLesson
    from trainer.config import load_config
    from trainer.protocol import Sample

    lesson = DreamBoothLesson()
    qtbot.addWidget(lesson)
    demo = lesson.demo
    config = demo.config()
    shipped = load_config(paths.preset_path("demo"))
    assert config.dreambooth.prior_preservation and config.sampling.at_start
    assert list(config.sampling.prompts) == ["a sks shape", "a shape"]
    assert config.training == shipped.training.model_copy(update={"eval_every": config.training.eval_every})
    demo.prior.setChecked(False)
    assert not demo.config().dreambooth.prior_preservation
    pictures = paths.resources_dir() / "demo"
    emblems = [str(p) for p in sorted((pictures / "dataset").glob("emblem-*.png"))[:4]]
    shapes = [str(p) for p in sorted((pictures / "class_images").glob("*.png"))[:4]]
    prompts = ("a sks shape",) * 4 + ("a shape",) * 4
    demo.running_prior = True  # as start() records it
    demo.show_sample(Sample(0, tuple(shapes + shapes), prompts, (0, 1, 2, 3) * 2))
    demo.show_sample(Sample(400, tuple(emblems + shapes), prompts, (0, 1, 2, 3) * 2))
    assert demo.before.emblems("a sks shape") == (0, 4) and demo.afters[True].emblems("a sks shape") == (4, 4)
    assert demo.afters[True].emblems("a shape") == (0, 4) and not demo.afters[False].readings
    assert demo.class_change(True) == 0.0 and demo.class_change(False) is None  # "a shape": the same pictures
    assert demo.afters[True].change_from(demo.before, "a sks shape") > 0.05  # shapes became emblems
    demo._summarise()
    assert "4 of 4" in demo.summary.text() and "0 of 4 before" in demo.summary.text()
    assert "changed by 0 %" in demo.summary.text()
    # A run without prior preservation keeps the first run's row: both stay on show to compare "a shape".
