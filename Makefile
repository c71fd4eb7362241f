# Two entry points for a fresh Debian machine: `make demo` and `make test`.
# Both create .venv, install the system library open3d needs and every Python
# dependency once; re-running is fast because the install is stamped.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_out

.PHONY: demo test test-fast lint bench clean system-deps browser

$(STAMP): pyproject.toml constraints.txt
	@$(MAKE) --no-print-directory system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[all,dev]"
	touch $(STAMP)

# open3d dlopens libusb-1.0; install it with apt only when it is missing.
system-deps:
	@if ! ldconfig -p | grep -q 'libusb-1.0.so.0'; then \
		echo "installing system library libusb-1.0-0 (needed by open3d)"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libusb-1.0-0 >/dev/null; \
	fi

# The report tests open every page in a real browser: Debian's chromium (headless, no display needed).
browser:
	@if ! command -v chromium >/dev/null 2>&1; then \
		echo "installing chromium (the report tests open the HTML reports in a headless browser)"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi

demo: $(STAMP)
	$(BIN)/mulsen demo --out $(DEMO_OUT)

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

# The inner loop: everything not marked slow (about a minute).
test-fast: $(STAMP) browser
	$(BIN)/python -m pytest -q -m "not slow"

# ruff, the layering contract (import-linter) and the type checker. The last two read the installed
# layout (mulsen.dataset is dataset/, ...), so the package is first installed into a scratch folder.
LINT_SITE := build/lint-site
lint: $(STAMP)
	$(BIN)/ruff check .
	rm -rf build && $(BIN)/python -m pip install -q --no-deps --no-build-isolation --target $(LINT_SITE) . >/dev/null
	cd $(LINT_SITE) && $(CURDIR)/$(BIN)/lint-imports $(CURDIR)/pyproject.toml
	cd $(LINT_SITE) && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p mulsen
	rm -rf build

bench: $(STAMP)
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache build
