# Thin wrappers around the project's checks. `make` alone lists the targets.
# Every Python tool runs as `$(PYTHON) -m ...`, so `make lint PYTHON=/path/to/venv/bin/python`
# checks with that environment's tools and that environment's ferrocorn build.

PYTHON ?= python3
# stubtest's allowlist (stub entries that may differ from the extension); used when the file exists.
STUBTEST_ALLOWLIST ?= python/stubtest-allowlist.txt
STUBTEST_FLAGS = $(if $(wildcard $(STUBTEST_ALLOWLIST)),--allowlist $(STUBTEST_ALLOWLIST))

.DEFAULT_GOAL := help
# The layer check lives beside the repository (CI clones it into ../shared); skipped without it.
LAYERS_TOOL ?= ../shared/tools/rust_layers.py

# Other CPythons the package supports (requires-python >= 3.10): each gets its own wheel and venv,
# and runs SMOKE_TESTS. pyenv's interpreters by default; override with OTHER_PYTHONS="/path/python3 ...".
OTHER_PYTHONS ?= $(foreach v,3.10 3.12 3.13,$(firstword $(wildcard $(HOME)/.pyenv/versions/$(v).*/bin/python3)))
# The smoke each of them runs (CI's main interpreter runs the whole suite): the ASGI surface, where
# the CPython versions differ for us (bytes and dict handling at the PyO3 boundary, eager task start
# on 3.12+), and HTTP/1.1 framing end to end. ~45 s per interpreter.
SMOKE_TESTS ?= tests/asgi tests/http1/test_framing.py
SMOKE_DIR ?= /tmp/ferrocorn-smoke

.PHONY: help install lint layers stubtest test ci tools fmt bench smoke-pythons fuzz-smoke

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-9s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## install what the tests and checks need, and ferrocorn itself (release build)
	$(PYTHON) -m pip install -r tests/requirements.txt .

lint: ## check formatting, lints, types and the extension's stub; changes nothing
	cargo fmt --all -- --check
	cargo clippy --all-targets --locked -- -D warnings
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy python/ferrocorn
	@$(MAKE) --no-print-directory stubtest
	@$(MAKE) --no-print-directory layers

layers: ## (part of lint) no module or folder of src/, and no module of python/ferrocorn, imports one that imports it back
	$(PYTHON) .ci/py_layers.py python/ferrocorn
	@if [ -f $(LAYERS_TOOL) ]; then \
		$(PYTHON) $(LAYERS_TOOL) src && $(PYTHON) $(LAYERS_TOOL) src --units top; \
	else \
		echo "layers: $(LAYERS_TOOL) not found, skipped"; \
	fi

# The working tree's python/ferrocorn/_ferrocorn.pyi (pyproject's mypy_path points there) against
# the extension installed in $(PYTHON)'s environment: reinstall after changing the Rust side.
stubtest: ## (part of lint) the extension's type stub against the installed extension
	$(PYTHON) -m mypy.stubtest ferrocorn._ferrocorn --mypy-config-file pyproject.toml $(STUBTEST_FLAGS)

test: ## Rust unit tests, then the black-box Python suite (needs an installed ferrocorn)
	cargo test --locked
	$(PYTHON) -m pytest tests

ci: tools lint test smoke-pythons fuzz-smoke ## system tools, lint, test, a wheel per other CPython, the fuzz smoke: what CI runs after `make install`

# Tests that drive curl, h2load or a real browser skip without them; CI machines start without them.
TOOLS = curl:curl h2load:nghttp2-client chromium:chromium

tools: ## install the system tools some tests drive (curl, h2load, chromium) when missing (root with apt)
	@missing=""; for pair in $(TOOLS); do \
		command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -z "$$missing" ]; then echo "tools: all present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "tools: installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "tools: missing$$missing (not root or no apt): the tests that drive them skip"; fi

smoke-pythons: ## (part of ci) a wheel per other CPython (OTHER_PYTHONS), installed in a fresh venv with no Rust in reach, runs SMOKE_TESTS
	@if [ -z "$(strip $(OTHER_PYTHONS))" ]; then echo "smoke-pythons: no CPython 3.10, 3.12 or 3.13 under pyenv, skipped"; fi
	@for py in $(OTHER_PYTHONS); do \
		version=$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
		echo "== CPython $$version ($$py)"; \
		rm -rf $(SMOKE_DIR)/$$version && \
		$$py -m pip wheel -q --no-deps --wheel-dir $(SMOKE_DIR)/$$version/wheel . && \
		$$py -m venv $(SMOKE_DIR)/$$version/venv && \
		env PATH=/usr/local/bin:/usr/bin:/bin CARGO_HOME=/nonexistent RUSTUP_HOME=/nonexistent \
			$(SMOKE_DIR)/$$version/venv/bin/python -m pip install -q --only-binary ferrocorn \
			-r tests/requirements.txt $(SMOKE_DIR)/$$version/wheel/*.whl && \
		env PATH=/usr/local/bin:/usr/bin:/bin CARGO_HOME=/nonexistent RUSTUP_HOME=/nonexistent \
			$(SMOKE_DIR)/$$version/venv/bin/python -m pytest -q $(SMOKE_TESTS) || exit 1; \
	done

# Fuzzing (fuzz/, docs/hardening.md): every cargo-fuzz target, built in one cargo invocation with the
# flags `cargo fuzz build -O` uses (libFuzzer, AddressSanitizer; no cargo-fuzz binary needed), then
# each run FUZZ_SECONDS from its committed seeds into a throw-away corpus. A crash, leak or timeout
# fails the target (its input is left in fuzz/artifacts/<target>/).
FUZZ_TOOLCHAIN ?= +nightly
FUZZ_SECONDS ?= 10
FUZZ_TRIPLE ?= $(shell rustc $(FUZZ_TOOLCHAIN) -vV 2>/dev/null | sed -n 's/^host: //p')
FUZZ_TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),fuzz/target)
FUZZ_TARGETS := $(basename $(notdir $(wildcard fuzz/fuzz_targets/*.rs)))
FUZZ_RUSTFLAGS = -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
	-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
	-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing \
	-Cllvm-args=-simplifycfg-branch-fold-threshold=0 -Zsanitizer=address \
	-Cllvm-args=-sanitizer-coverage-stack-depth -Ccodegen-units=1

fuzz-smoke: ## build every fuzz target (nightly), run each FUZZ_SECONDS (10) s from its seeds; fails on a crash
	RUSTFLAGS="$(FUZZ_RUSTFLAGS)" cargo $(FUZZ_TOOLCHAIN) build --manifest-path fuzz/Cargo.toml \
		--target $(FUZZ_TRIPLE) --release --config 'profile.release.debug="line-tables-only"' \
		--target-dir $(FUZZ_TARGET_DIR) --bins
	@corpus=$$(mktemp -d) && trap 'rm -rf "$$corpus"' EXIT && \
	for target in $(FUZZ_TARGETS); do \
		echo "== $$target ($(FUZZ_SECONDS) s)"; \
		mkdir -p "$$corpus/$$target" fuzz/artifacts/$$target && \
		ASAN_OPTIONS=detect_odr_violation=0 $(FUZZ_TARGET_DIR)/$(FUZZ_TRIPLE)/release/$$target \
			-artifact_prefix=fuzz/artifacts/$$target/ -max_total_time=$(FUZZ_SECONDS) \
			"$$corpus/$$target" fuzz/seeds/$$target 2>"$$corpus/$$target.log" \
			|| { tail -n 40 "$$corpus/$$target.log"; echo "fuzz-smoke: $$target failed"; exit 1; }; \
		grep -E '^#[0-9]+[[:space:]]+DONE' "$$corpus/$$target.log" || tail -n 2 "$$corpus/$$target.log"; \
	done

fmt: ## apply rustfmt and ruff's formatting and safe fixes
	cargo fmt --all
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

bench: ## install the benchmark tools, then run every workload (~25 min; see benches/README.md)
	PYTHON=$(PYTHON) bash benches/setup.sh
	$(PYTHON) benches/run.py --workloads all
