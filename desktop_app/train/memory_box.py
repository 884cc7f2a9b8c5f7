"""The *Memory & speed* box: which device trains, how much memory these settings need, and Measure.

* Device: asked of PyTorch in a trainer process (task ``device-info``; the GUI never imports torch)
  when the box is first shown: "NVIDIA … — 24.0 GB, 21.3 GB free" or "CPU only".  The same task
  counts the base model's parameters from its file headers (asked again when the model changes).
* Estimate: :func:`trainer.memory_estimate.estimate_memory` (a pure function; formula and assumptions
  in its module) on every valid edit, compared with the device's memory.  Counted parameters from
  the block tree replace the reference model's when they are known.
* Measure: task ``measure`` trains a few real steps of these settings in a trainer process and
  reports peak memory and it/s.  Refused while a run trains (two trainers would share the device).
* Make it fit: :func:`trainer.memory_plan.plan_memory` (light, pure) for the device ``device-info`` reported (its
  free GPU memory, the computer's RAM): the fastest memory options that fit are set in the form, each with its
  reason shown; when nothing fits, the form is left as it is and the smallest plan's need is shown.  On a GPU,
  with the model's files there, Measure then runs on the plan; a peak past the estimate by more than the margin
  re-plans once with the estimate scaled by what was measured (the calibration), and the error is shown.  The
  caches the plan holds in RAM are counted by the dataset's real image count (:meth:`MemoryBox.set_image_count`).

Threads: GUI thread; the two tasks run in trainer processes through :class:`desktop_app.tasks.TaskRunner`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from PySide6.QtCore import Qt
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from desktop_app.session import TrainingSession
from desktop_app.status_bar import format_bytes
from desktop_app.tasks import TaskRunner
from desktop_app.train.config_model import ConfigModel
from trainer.families import family
from trainer.memory_estimate import MemoryEstimate, estimate_memory
from trainer.memory_plan import SAFETY_MARGIN, DeviceFacts, MemoryPlan, plan_memory
from trainer.protocol import Failed, TaskDone, TaskProgress

MEASURE_STEPS = 5


class MemoryBox(QFrame):
    device_info: ClassVar[dict[str, Any] | None] = None  # one answer per app session
    parameter_cache: ClassVar[dict[str, dict[str, int]]] = {}  # model path → parameters by component

    def __init__(self, model: ConfigModel, session: TrainingSession | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("memoryBox")
        self.model, self.session = model, session
        self.parameters: dict[str, int] | None = None
        self.images = 0  # the dataset's image count, for the plan's caches (0: not known)
        self.trainable: int | None = None
        self.estimate: MemoryEstimate | None = None
        self.measured: dict[str, Any] | None = None
        self.device_runner = TaskRunner(self)
        self.device_runner.done.connect(self._on_device)
        self.device_runner.busyChanged.connect(self._ask_again_if_needed)
        self._asked_for: str | None = None  # the model path the running device-info task counts
        self._again = False
        self.device_runner.failed.connect(lambda event: self._set_device_text(f"Device unknown: {event.message}"))
        self.measure_runner = TaskRunner(self)
        self.measure_runner.progress.connect(self._on_measure_progress)
        self.measure_runner.done.connect(self._on_measured)
        self.measure_runner.failed.connect(self._on_measure_failed)
        self.measure_runner.busyChanged.connect(lambda _busy: self._update_buttons())

        self.device_label = self._label("deviceLabel")
        self.estimate_label = self._label("estimateLabel")
        self.measure_label = self._label("measureLabel")
        self.measure_button = QPushButton("Measure")
        self.measure_button.setObjectName("measureButton")
        self.measure_button.setToolTip(f"Train {MEASURE_STEPS} real steps of these settings in a trainer process "
                                       "and report the peak memory and speed (nothing is saved)")
        self.measure_button.clicked.connect(self.toggle_measure)
        self.plan: MemoryPlan | None = None
        self._verifying = False  # the running Measure checks a plan just made (and may re-plan once)
        self.plan_label = self._label("planLabel")
        self.fit_button = QPushButton("Make it fit")
        self.fit_button.setObjectName("fitButton")
        self.fit_button.setToolTip("Set the fastest memory options (quantization, block swap, checkpointing, text "
                                   "encoders off the GPU, batch with accumulation) whose estimate fits this "
                                   "device with a 5 % margin; the model, resolution, rank and effective batch stay")
        self.fit_button.clicked.connect(lambda _checked: self.make_it_fit())
        row = QHBoxLayout()
        row.addWidget(self.measure_label, 1)
        row.addWidget(self.fit_button)
        row.addWidget(self.measure_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 6, 0, 0)
        layout.addWidget(self.device_label)
        layout.addWidget(self.estimate_label)
        layout.addLayout(row)
        layout.addWidget(self.plan_label)
        self.plan_label.hide()
        self.measure_label.setText("Measure runs a few real steps to check the estimate.")
        self._set_device_text("Device: not checked yet" if MemoryBox.device_info is None else "")
        model.configChanged.connect(lambda _config: self.update_estimate())
        model.valueChanged.connect(self._on_value_changed)
        model.errorsChanged.connect(self._update_buttons)
        if session is not None:
            session.stateChanged.connect(lambda _state: self._update_buttons())
        self.update_estimate()
        self._update_buttons()

    def _label(self, name: str) -> QLabel:
        label = QLabel()
        label.setObjectName(name)
        label.setWordWrap(True)
        label.setTextFormat(Qt.TextFormat.RichText)
        return label

    # ------------------------------------------------------------------ device

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if MemoryBox.device_info is None or self._model_path() not in MemoryBox.parameter_cache:
            self.detect_device()
        else:
            self._show_device(MemoryBox.device_info)

    def _model_path(self) -> str:
        return str(self.model.value("model.path"))

    def detect_device(self) -> None:
        """Ask the trainer which device it would use, and how big the base model is."""
        if self.device_runner.is_busy():
            self._again = True
            return
        if MemoryBox.device_info is None:
            self._set_device_text("Device: asking PyTorch…")
        self._asked_for = self._model_path()
        self.device_runner.start("device-info", {"model": self._asked_for})

    def _ask_again_if_needed(self, busy: bool) -> None:
        if not busy and self._again:
            self._again = False
            self.detect_device()

    def _on_value_changed(self, name: str, _value: object) -> None:
        if name == "model.path" and self.isVisible() and self._model_path() not in MemoryBox.parameter_cache:
            self.detect_device()

    def _on_device(self, event: TaskDone) -> None:
        info = MemoryBox.device_info = dict(event.result)
        if self._asked_for is not None and info.get("parameters"):
            MemoryBox.parameter_cache[self._asked_for] = dict(info["parameters"])
        self._show_device(info)

    def _show_device(self, info: dict[str, Any]) -> None:
        if info.get("cuda"):
            text = (f"<b>{info['name']}</b> — {format_bytes(info['total_bytes'])}, "
                    f"{format_bytes(info['free_bytes'])} free")
        else:
            text = (f"<b>CPU only</b> — {format_bytes(info.get('free_bytes', 0))} RAM free<br>"
                    f"<small>PyTorch {info.get('torch', '')} sees no CUDA GPU; training runs on the CPU</small>")
        self._set_device_text(text)
        self.update_estimate()
        self._update_buttons()

    def _set_device_text(self, text: str) -> None:
        if text:
            self.device_label.setText(f"Device: {text}" if not text.startswith("Device") else text)
            self._relayout()

    def _relayout(self) -> None:
        """A wrapped label that grows a line after the form was laid out needs its row to grow too."""
        self.updateGeometry()
        group = self.parentWidget()
        if group is not None and group.layout() is not None:
            group.layout().invalidate()

    # ------------------------------------------------------------------ estimate

    def set_parameters(self, parameters: dict[str, int] | None, trainable: int | None) -> None:
        """Counted parameters (from the block tree) replace the reference model's in the estimate."""
        self.parameters, self.trainable = parameters, trainable
        self.update_estimate()

    def set_image_count(self, images: int) -> None:
        """The dataset's real image count (``desktop_app/train/image_counts.py``; 0: not known): the plan counts the
        latent and caption caches it would hold in RAM by it."""
        self.images = images

    def update_estimate(self) -> None:
        config = self.model.config
        if config is None:
            self.estimate_label.setText("Estimate: fix the settings marked in red first.")
            return
        info = MemoryBox.device_info
        device = "cpu" if info is not None and not info.get("cuda") else "cuda"
        trainable = self.trainable if config.mode == "frozen" else None
        parameters = self.parameters or MemoryBox.parameter_cache.get(self._model_path())
        self.estimate = estimate_memory(config, device, parameters, trainable)
        parts = " · ".join(f"{name} {format_bytes(value)}" for name, value in self.estimate.parts().items() if value)
        verdict = ""
        facts = self.device_facts()
        if info is not None and info.get("total_bytes") and facts is not None:
            total = int(info["total_bytes"])
            # "fits" by the planner's own rule (its safety margin, and the CUDA context on a GPU).
            budget = facts.vram_budget if facts.cuda else facts.ram_budget
            if self.estimate.total > total:
                verdict = f" <span style='color:#c92a2a'>— more than the {format_bytes(total)} there is</span>"
            elif self.estimate.total > budget:
                verdict = " <span style='color:#e67700'>— tight</span>"
            else:
                verdict = " <span style='color:#2b8a3e'>— fits</span>"
        where = "GPU" if device == "cuda" else "RAM"
        basis = ("model size read from its files" if parameters else
                 f"assuming a standard {family(config.model.architecture).display_name} model until its files "
                 "are read")
        notes = []
        if self.estimate.encoding:
            notes.append(f"the text encoders ({format_bytes(self.estimate.encoding)}) leave the GPU once the "
                         "captions are encoded")
        if config.model.base_quantization != "none":
            notes.append(f"base blocks in {config.model.base_quantization}")
        if config.model.text_encoder_quantization != "none":
            notes.append(f"text encoders in {config.model.text_encoder_quantization}")
        if config.model.blocks_to_swap:
            notes.append(f"{config.model.blocks_to_swap} blocks swapped in from RAM as they run")
        extra = "".join(f"; {note}" for note in notes)
        self.estimate_label.setText(f"Estimate: <b>~{format_bytes(self.estimate.total)}</b> {where}{verdict}"
                                    f"<br><small>{parts}; {self.estimate.trainable_parameters:,} trainable "
                                    f"parameters{extra}; {basis}</small>")
        self._relayout()
        self.estimate_label.setToolTip("From trainer/memory_estimate.py: weights, gradients and optimizer states "
                                       "from parameter counts, activations from resolution² × batch size. "
                                       "About ±30 %; Measure gives the real number.")

    # ------------------------------------------------------------------ make it fit

    def device_facts(self) -> DeviceFacts | None:
        """What the planner needs of the device ``device-info`` reported (None: not asked yet)."""
        info = MemoryBox.device_info
        if info is None:
            return None
        ram = int(info.get("ram_bytes") or info.get("total_bytes", 0))
        if not info.get("cuda"):
            return DeviceFacts(vram_total=0, ram=ram, cpus=int(info.get("cpu_count", 1)))
        return DeviceFacts(vram_total=int(info["total_bytes"]), ram=ram, vram_free=int(info["free_bytes"]),
                           cpus=int(info.get("cpu_count", 1)))

    def make_it_fit(self, calibration: float = 1.0, note: str = "") -> None:
        """Plan for this device and set the plan's options in the form (only when it fits); on a GPU, with the
        model's files there, Measure the plan (once: not after a re-plan, which ``calibration`` marks)."""
        config, device = self.model.config, self.device_facts()
        if config is None or device is None:
            return
        parameters = self.parameters or MemoryBox.parameter_cache.get(self._model_path())
        self.plan = plan = plan_memory(config, device, parameters, self.images, calibration=calibration)
        reasons = "".join(f"<br>• {reason}" for reason in plan.reasons)
        if not plan.fits:
            head = plan.describe().splitlines()[0]
            self.plan_label.setText(f"{note}<span style='color:#c92a2a'>{head}</span> Nothing was changed."
                                    f"{reasons}")
        else:
            # Checkpointing first: a swap count needs it, and every step of the way is shown to the form.
            for name in sorted(plan.changes, key=lambda key: key != "training.gradient_checkpointing"):
                self.model.set_value(name, plan.changes[name])
            changed = f"{len(plan.changes)} setting{'s' if len(plan.changes) != 1 else ''} changed" \
                if plan.changes else "these settings already are the plan"
            self.plan_label.setText(f"{note}<b>Made it fit</b> ({changed}; step time ×{plan.relative_time:.2f} of "
                                    f"the plain run by Kamaal's cost model):{reasons}")
            if device.cuda and calibration == 1.0 and self.model.is_valid() and not self.measure_runner.is_busy():
                self._verifying = True
                self.toggle_measure()
        self.plan_label.show()
        self._relayout()

    def _check_plan(self, result: dict[str, Any]) -> None:
        """Measure's peak against the plan's estimate: within the margin, say so; past it, re-plan once."""
        plan, config = self.plan, self.model.config
        if plan is None or config is None or result.get("memory_kind") != "cuda" or not plan.vram_need:
            return
        peak, estimate = int(result["peak_memory_bytes"]), plan.vram_need
        error = (f"measured {format_bytes(peak)} against the estimate {format_bytes(estimate)} "
                 f"({peak / estimate - 1:+.0%})")
        if peak <= estimate * (1 + SAFETY_MARGIN):
            self.plan_label.setText(f"{self.plan_label.text()}<br><b>Checked</b>: {error}.")
            self._relayout()
            return
        self.make_it_fit(calibration=peak / estimate,
                         note=f"<b>Re-planned</b>: {error}; the estimate is now scaled by {peak / estimate:.2f} on "
                              "this device.<br>")

    # ------------------------------------------------------------------ measure

    def toggle_measure(self) -> None:
        if self.measure_runner.is_busy():
            self.measure_runner.cancel()
            return
        config = self.model.config
        if config is None or (self.session is not None and self.session.is_active()):
            return
        self.measured = None
        self.measure_label.setText("Measuring: starting a trainer process…")
        self.measure_runner.start("measure", {"config": config.to_dict(), "steps": MEASURE_STEPS})

    def _on_measure_progress(self, event: TaskProgress) -> None:
        self.measure_label.setText(f"Measuring: {event.message}")
        self._relayout()

    def _on_measured(self, event: TaskDone) -> None:
        self.measured = result = dict(event.result)
        if self._verifying:
            self._verifying = False
            self._check_plan(result)
        kind = "GPU (allocated)" if result.get("memory_kind") == "cuda" else "RAM (whole process)"
        peak = format_bytes(result["peak_memory_bytes"])
        speed = f"{result['it_per_s']:.2f} it/s"
        self.measure_label.setText(f"Measured on {result.get('device', '?')}: <b>{peak}</b> peak {kind}, "
                                   f"<b>{speed}</b> over {result['steps']} steps")
        self._relayout()

    def _on_measure_failed(self, event: Failed) -> None:
        self._verifying = False
        self.measure_label.setText("Measuring was cancelled." if event.kind == "cancelled"
                                   else f"<span style='color:#c92a2a'>Measuring failed: {event.message}</span>")
        self._relayout()

    def _update_buttons(self, *_: object) -> None:
        busy = self.measure_runner.is_busy()
        training = self.session is not None and self.session.is_active()
        self.measure_button.setText("Cancel" if busy else "Measure")
        self.measure_button.setEnabled(busy or (self.model.is_valid() and not training))
        # Planning needs valid settings, not the files (a person may plan before the model is downloaded).
        self.fit_button.setEnabled(self.model.config is not None and not training and MemoryBox.device_info is not None)

    def shutdown(self) -> None:
        self.device_runner.close()
        self.measure_runner.close()
