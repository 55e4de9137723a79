# The two commands of the README:
#   make lesson N=01 [PROFILE=smoke|standard|full]   set up if missing, run one lesson headless
#   make test                                         set up if missing, run the whole test suite
# Set-up creates .venv with the package and its dev extra. TORCH_INDEX=<url> installs torch and
# torchvision from another index first (for example https://download.pytorch.org/whl/cpu).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup lesson test lint release feature-net benchmarks clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install torch torchvision --index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

lesson: $(STAMP)
	@test -n "$(N)" || { echo "usage: make lesson N=01 [PROFILE=smoke|standard|full]"; exit 2; }
	$(BIN)/python -m course run $(N) $(if $(PROFILE),--profile $(PROFILE))

test: $(STAMP)
	COURSE_PROFILE=smoke TQDM_DISABLE=1 $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/python -m ruff check companion course tests scripts benchmarks
	$(BIN)/python -m course check

release: $(STAMP)
	$(BIN)/python -m course release --out release

feature-net: $(STAMP)
	$(BIN)/python scripts/train_feature_net.py

benchmarks: $(STAMP)
	$(BIN)/python benchmarks/fid_speed.py

clean:
	rm -rf $(VENV) release
