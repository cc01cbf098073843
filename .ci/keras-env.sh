#!/usr/bin/env bash
# Make (or reuse) the separate virtual environment holding the real keras-hub (with the full
# tensorflow it needs) and kagglehub, used only by the KerasHub tests of the kagglehub plug-in
# (tests/test_kagglehub_keras.py; they skip when HUBCACHE_KERAS_PYTHON is unset).
#
# Location: $HUBCACHE_KERAS_VENV, default $HOME/.cache/hubcache-ci/keras-venv.
# Base interpreter: $HUBCACHE_KERAS_BASE_PYTHON, default python3.11 (else python3).
# Progress goes to stderr; the LAST stdout line is the venv's python, so:
#     export HUBCACHE_KERAS_PYTHON=$(bash .ci/keras-env.sh | tail -1)
#
# keras-hub 0.32 pins kagglesdk 0.1.28, so pip gives it kagglehub 1.0.2 (1.0.3 needs a newer
# kagglesdk): this env is also where the plug-in meets kagglehub 1.0.2.
set -euo pipefail

KERAS_HUB_VERSION=0.32.0
name=keras-env
venv="${HUBCACHE_KERAS_VENV:-$HOME/.cache/hubcache-ci/keras-venv}"
base="${HUBCACHE_KERAS_BASE_PYTHON:-}"
source "$(dirname "$0")/env-lib.sh"

# What has to import for the env to be usable (hubcache itself runs from the source tree
# inside this env, so its runtime dependencies are installed too).
check() {
    TF_CPP_MIN_LOG_LEVEL=2 "$py" - <<'PY' >&2
import importlib.metadata as md
import keras_hub, kagglehub, urllib3, tqdm  # noqa: F401
assert md.version("keras-hub") == "0.32.0", md.version("keras-hub")
PY
}

install() {
    log "installing keras-hub==$KERAS_HUB_VERSION (and the tensorflow, kagglehub it pulls)"
    pip install --upgrade pip
    pip install "keras-hub==$KERAS_HUB_VERSION"
    pip install "urllib3>=2.0" "tqdm>=4.60" "isal>=1.5"
}

build_env
