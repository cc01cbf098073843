#!/usr/bin/env bash
# Make (or reuse) the separate virtual environment holding the real tensorflow and
# tensorflow_hub, used only by the interop tests (tests/test_interop_tensorflow_hub.py).
#
# Location: $HUBCACHE_TF_VENV, default $HOME/.cache/hubcache-ci/tf-venv.
# Base interpreter: $HUBCACHE_TF_BASE_PYTHON, default python3.11 (else python3).
# Progress goes to stderr; the LAST stdout line is the venv's python, so:
#     export HUBCACHE_TF_PYTHON=$(bash .ci/tf-env.sh | tail -1)
#
# tensorflow_hub is installed with --no-deps because its declared dependencies would pull
# the full (GPU) tensorflow wheel on top of tensorflow-cpu; what it needs at import time is
# installed explicitly below.
set -euo pipefail

TFHUB_VERSION=0.16.1
venv="${HUBCACHE_TF_VENV:-$HOME/.cache/hubcache-ci/tf-venv}"
py="$venv/bin/python"

log() { printf 'tf-env: %s\n' "$*" >&2; }

# What has to import for the env to be usable (hubcache itself needs urllib3 and tqdm:
# the tests run hubcache from the source tree inside this env).
check() {
    TF_CPP_MIN_LOG_LEVEL=2 "$py" - <<'PY' >&2
import importlib.metadata as md
import tensorflow_hub, tf_keras, urllib3, tqdm  # noqa: F401
assert md.version("tensorflow_hub") == "0.16.1", md.version("tensorflow_hub")
PY
}

if [ -x "$py" ] && check 2>/dev/null; then
    log "reusing $venv"
    printf '%s\n' "$py"
    exit 0
fi

base="${HUBCACHE_TF_BASE_PYTHON:-}"
if [ -z "$base" ]; then
    if command -v python3.11 >/dev/null 2>&1; then base=python3.11; else base=python3; fi
fi

start=$SECONDS
if ! "$py" -c 'import sys' >/dev/null 2>&1; then
    # Missing or broken (e.g. its base python went away): make it anew.
    log "creating $venv with $base ($("$base" --version 2>&1))"
    mkdir -p "$(dirname "$venv")"
    "$base" -m venv --clear "$venv"
fi

pip() { "$py" -m pip --disable-pip-version-check --no-input -q "$@" >&2; }

log "installing setuptools<81 and tensorflow-cpu"
pip install --upgrade pip
# setuptools<81: tensorflow_hub 0.16.1 imports pkg_resources, removed in setuptools 81.
pip install "setuptools<81" tensorflow-cpu

# tf-keras must match tensorflow's major.minor; pin it to the tensorflow just installed.
tf_minor=$("$py" -c 'import importlib.metadata as m; print(".".join(m.version("tensorflow-cpu").split(".")[:2]))')
log "installing tensorflow-hub==$TFHUB_VERSION and tf-keras~=$tf_minor.0 (--no-deps)"
pip install --no-deps "tensorflow-hub==$TFHUB_VERSION" "tf-keras~=$tf_minor.0"

# Imports tensorflow_hub needs that --no-deps skipped (numpy and protobuf come with
# tensorflow), plus hubcache's own runtime dependencies.
pip install "urllib3>=2.0" "tqdm>=4.60"

if ! check; then
    log "the environment at $venv does not import tensorflow_hub; see the error above"
    exit 1
fi
log "ready in $((SECONDS - start)) s: $(du -sh "$venv" | cut -f1)"
printf '%s\n' "$py"
