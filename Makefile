# Kamaal — the two commands that matter: `make run` and `make test`.
# Each creates .venv (with the exact versions in constraints.txt) when it is missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench gpu-check package clean-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned, so no other package can pull a different (CUDA) build.
	$(BIN)/python -m pip install --quiet -c constraints.txt torch
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

## run: open the app on the demo project (headless demo through the CLI when there is no display)
run: $(STAMP)
	$(BIN)/kamaal --demo

## test: the whole test suite (CPU only, offline, offscreen Qt)
test: $(STAMP)
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
package: $(STAMP)
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
