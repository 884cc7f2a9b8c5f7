# Kamaal — the two commands that matter: `make run` and `make test`.
# Each creates .venv (with the exact versions in constraints.txt) when it is missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench gpu-check package clean-venv translations update-translations

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned, so no other package can pull a different (CUDA) build.
	$(BIN)/python -m pip install --quiet -c constraints.txt torch
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

## translations: the interface's languages, compiled from the committed .ts sources (Qt's .qm files, never committed)
TS_FILES := $(wildcard resources/i18n/*.ts)
QM_FILES := $(TS_FILES:.ts=.qm)
translations: $(QM_FILES)

resources/i18n/%.qm: resources/i18n/%.ts $(STAMP)
	$(BIN)/pyside6-lrelease -silent $< -qm $@

# the Train page's widgets that the Learn page's lessons 2 and 3 show too
TRANSLATED_ELSEWHERE := desktop_app/preview/loss_plot.py desktop_app/preview/weights_view.py
## update-translations: refresh the .ts sources from the strings marked in the code (tr("…"), marked("…"));
## then translate what is new (pyside6-linguist, or by hand) — tests/learn fails on an untranslated string
update-translations: $(STAMP)
	$(BIN)/pyside6-lupdate -silent -locations none -tr-function-alias QT_TR_NOOP+=marked \
		$(sort $(wildcard desktop_app/learn/*.py)) $(TRANSLATED_ELSEWHERE) -ts $(TS_FILES)

## run: open the app on the demo project (headless demo through the CLI when there is no display)
run: $(STAMP) translations
	$(BIN)/kamaal --demo

## test: the whole test suite (CPU only, offline, offscreen Qt)
test: $(STAMP) translations
	$(BIN)/ruff check trainer desktop_app tests bench
	$(BIN)/lint-imports
	QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check trainer desktop_app tests bench
	$(BIN)/lint-imports

## bench: every benchmark side by side with its reference; table + bench/results/latest.json
bench: $(STAMP)
	QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1 $(BIN)/python -m bench

## gpu-check: on a CUDA GPU, within 8 minutes: Kamaal's trainer on full-size SD 1.5 / SDXL (bf16, fp16, checkpointing,
## 8-bit AdamW) vs the diffusers-style loop, the memory estimate's error, then pytest -m cuda; bench/results/gpu-*.json.
## Without CUDA it says so; GPU_CHECK_ARGS=--dry-run runs it on the CPU with tiny models.
gpu-check: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.gpu_check $(GPU_CHECK_ARGS)

## package: the double-click app dist/Kamaal/ (PyInstaller, build.spec), its self-test, then the download:
## dist/Kamaal-VERSION-linux-ARCH.tar.gz on Linux, dist/Kamaal-VERSION-macos-ARCH.dmg on macOS (Windows: see README)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
package: $(STAMP) translations
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,package]"
	$(BIN)/pyinstaller --noconfirm --log-level WARN build.spec
	if [ "$$(uname -s)" = Darwin ]; then \
		packaging/macos/make_dmg.sh $(VERSION); \
	else \
		dist/Kamaal/Kamaal --self-test && \
		packaging/linux/make_tarball.sh $(VERSION); \
	fi

clean-venv:
	rm -rf $(VENV)
