"""The optimizers and schedules of ``trainer/optim.py``: each optimizer resumes bit for bit through the checkpoint's
own serialisation (``torch.save`` / ``torch.load(weights_only=True)``) and does what it is chosen for; the
schedules follow their fields; schedule-free AdamW samples and saves its averaged weights and goes on exactly as
if it had not."""

from __future__ import annotations

import io
import math

import pytest
import torch

from trainer.config import TrainingConfig
from trainer.optim import averaged_weights, build_optimizer, build_scheduler, is_schedule_free

OPTIMIZERS = ["adamw", "prodigy", "adafactor", "lion", "came", "adamw_schedulefree"]
LR = {"adamw": 1e-2, "prodigy": 1.0, "adafactor": 1e-2, "lion": 1e-3, "came": 1e-2, "adamw_schedulefree": 1e-2}


def model_and_data(seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))
    x = torch.randn(64, 16)
    y = torch.sin(x[:, :4] * 2)
    return model, x, y


def training(optimizer: str, **fields) -> TrainingConfig:
    return TrainingConfig(optimizer=optimizer, learning_rate=LR[optimizer], steps=40, **fields)


def steps(model, optimizer, scheduler, x, y, count: int) -> list[float]:
    losses = []
    for _ in range(count):
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(float(loss))
    return losses


def saved_and_loaded(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # what trainer/checkpoint.py does with training_state.pt


@pytest.mark.parametrize("kind", OPTIMIZERS)
def test_each_optimizer_resumes_bit_for_bit_and_lowers_the_loss(kind):
    model, x, y = model_and_data()
    optimizer = build_optimizer(list(model.parameters()), training(kind), "cpu")
    losses = steps(model, optimizer, build_scheduler(optimizer, training(kind)), x, y, 40)
    assert losses[-1] < 0.7 * losses[0], losses  # measured: 0.60 → 0.02–0.38 after 40 steps

    cfg = training(kind, warmup_steps=4, scheduler="cosine")  # the schedule's state travels too
    model, x, y = model_and_data()
    optimizer = build_optimizer(list(model.parameters()), cfg, "cpu")
    scheduler = build_scheduler(optimizer, cfg)
    steps(model, optimizer, scheduler, x, y, 20)
    straight = [p.detach().clone() for p in model.parameters()]

    first, x, y = model_and_data()
    optimizer = build_optimizer(list(first.parameters()), cfg, "cpu")
    scheduler = build_scheduler(optimizer, cfg)
    steps(first, optimizer, scheduler, x, y, 10)
    state = saved_and_loaded({"weights": [p.detach().clone() for p in first.parameters()],
                              "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()})
    second, _, _ = model_and_data(seed=1)  # other weights: the checkpoint must carry everything
    with torch.no_grad():
        for parameter, value in zip(second.parameters(), state["weights"], strict=True):
            parameter.copy_(value)
    optimizer = build_optimizer(list(second.parameters()), cfg, "cpu")
    scheduler = build_scheduler(optimizer, cfg)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    steps(second, optimizer, scheduler, x, y, 10)
    for a, b in zip(straight, second.parameters(), strict=True):
        assert torch.equal(a, b.detach()), kind


def test_prodigy_finds_its_own_step_size():
    cfg = training("prodigy")
    model, x, y = model_and_data()
    optimizer = build_optimizer(list(model.parameters()), cfg, "cpu")
    steps(model, optimizer, build_scheduler(optimizer, cfg), x, y, 20)
    d = optimizer.param_groups[0]["d"]
    assert d > 100 * optimizer.param_groups[0]["d0"], d  # grown from 1e-6 to what the problem needs


def test_adafactor_and_came_keep_factored_state_smaller_than_adamws():
    def state_numbers(kind: str) -> int:
        model, x, y = model_and_data()
        big = torch.nn.Linear(256, 256)
        params = [*model.parameters(), *big.parameters()]
        optimizer = build_optimizer(params, training(kind), "cpu")
        (torch.nn.functional.mse_loss(model(x), y) + big(torch.randn(4, 256)).pow(2).mean()).backward()
        optimizer.step()
        return sum(t.numel() for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor))

    adamw = state_numbers("adamw")  # two moments per weight
    assert state_numbers("adafactor") < 0.1 * adamw  # a row and a column per matrix, no first moment
    assert state_numbers("came") < 0.6 * adamw  # a first moment, the rest factored


def test_lion_moves_every_weight_by_exactly_the_learning_rate():
    cfg = training("lion")
    model, x, y = model_and_data()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = build_optimizer(list(model.parameters()), cfg, "cpu")
    torch.nn.functional.mse_loss(model(x), y).backward()
    optimizer.step()
    for old, new in zip(before, model.parameters(), strict=True):
        moved = (new.detach() - old).abs()
        assert torch.allclose(moved[moved > 0], torch.full_like(moved[moved > 0], cfg.learning_rate), rtol=1e-3)


def test_schedule_free_lends_its_average_and_takes_it_back_exactly():
    cfg = training("adamw_schedulefree")
    model, x, y = model_and_data()
    optimizer = build_optimizer(list(model.parameters()), cfg, "cpu")
    assert is_schedule_free(optimizer)
    scheduler = build_scheduler(optimizer, cfg)
    steps(model, optimizer, scheduler, x, y, 15)
    training_weights = [p.detach().clone() for p in model.parameters()]
    with averaged_weights(optimizer):
        averaged = [p.detach().clone() for p in model.parameters()]
        averaged_loss = float(torch.nn.functional.mse_loss(model(x), y))
    assert not all(torch.equal(a, b) for a, b in zip(averaged, training_weights, strict=True))
    assert all(torch.equal(a, b.detach()) for a, b in zip(training_weights, model.parameters(), strict=True))
    assert math.isfinite(averaged_loss)

    with averaged_weights(torch.optim.AdamW(model.parameters())):  # any other optimizer: nothing changes
        assert all(torch.equal(a, b.detach()) for a, b in zip(training_weights, model.parameters(), strict=True))


def test_the_schedules_follow_their_fields():
    def curve(**fields) -> list[float]:
        cfg = TrainingConfig(learning_rate=1.0, steps=100, **fields)
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        scheduler = build_scheduler(optimizer, cfg)
        rates = []
        for _ in range(100):
            rates.append(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
        return rates

    constant = curve(scheduler="constant", warmup_steps=10)  # an old config's constant with warm-up still warms
    assert constant[0] == 0.0 and constant[5] == pytest.approx(0.5) and constant[10:] == [1.0] * 90
    restarts = curve(scheduler="cosine_with_restarts", lr_cycles=3)
    peaks = [i for i in range(1, 100) if restarts[i] > restarts[i - 1] + 0.5]  # the hard restarts
    assert len(peaks) == 2, peaks
    squared = curve(scheduler="polynomial", lr_power=2.0)
    assert squared[50] == pytest.approx(0.25, abs=0.01) and squared[99] < 0.01
    linear = curve(scheduler="linear")
    assert linear[50] == pytest.approx(0.5, abs=0.01)
    cosine = curve(scheduler="cosine", warmup_steps=20)
    assert cosine[20] == pytest.approx(1.0) and cosine[60] == pytest.approx(0.5, abs=0.01)
