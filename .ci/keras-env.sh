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
venv="${HUBCACHE_KERAS_VENV:-$HOME/.cache/hubcache-ci/keras-venv}"
py="$venv/bin/python"

log() { printf 'keras-env: %s\n' "$*" >&2; }

# What has to import for the env to be usable (hubcache itself runs from the source tree
# inside this env, so its runtime dependencies are installed too).
check() {
    TF_CPP_MIN_LOG_LEVEL=2 "$py" - <<'PY' >&2
import importlib.metadata as md
import keras_hub, kagglehub, urllib3, tqdm  # noqa: F401
assert md.version("keras-hub") == "0.32.0", md.version("keras-hub")
PY
}

if [ -x "$py" ] && check 2>/dev/null; then
    log "reusing $venv"
    printf '%s\n' "$py"
    exit 0
fi

base="${HUBCACHE_KERAS_BASE_PYTHON:-}"
if [ -z "$base" ]; then
    if command -v python3.11 >/dev/null 2>&1; then base=python3.11; else base=python3; fi
fi

start=$SECONDS
if ! "$py" -c 'import sys' >/dev/null 2>&1; then
    log "creating $venv with $base ($("$base" --version 2>&1))"
    mkdir -p "$(dirname "$venv")"
    "$base" -m venv --clear "$venv"
fi

pip() { "$py" -m pip --disable-pip-version-check --no-input -q "$@" >&2; }

log "installing keras-hub==$KERAS_HUB_VERSION (and the tensorflow, kagglehub it pulls)"
pip install --upgrade pip
pip install "keras-hub==$KERAS_HUB_VERSION"
pip install "urllib3>=2.0" "tqdm>=4.60" "isal>=1.5"

if ! check; then
    log "the environment at $venv does not import keras_hub; see the error above"
    exit 1
fi
log "ready in $((SECONDS - start)) s: $(du -sh "$venv" | cut -f1)"
printf '%s\n' "$py"
