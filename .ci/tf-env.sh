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
name=tf-env
venv="${HUBCACHE_TF_VENV:-$HOME/.cache/hubcache-ci/tf-venv}"
base="${HUBCACHE_TF_BASE_PYTHON:-}"
source "$(dirname "$0")/env-lib.sh"

# What has to import for the env to be usable (hubcache itself needs urllib3 and tqdm:
# the tests run hubcache from the source tree inside this env).
check() {
    TF_CPP_MIN_LOG_LEVEL=2 "$py" - <<'PY' >&2
import importlib.metadata as md
import tensorflow_hub, tf_keras, urllib3, tqdm  # noqa: F401
assert md.version("tensorflow_hub") == "0.16.1", md.version("tensorflow_hub")
PY
}

install() {
    log "installing setuptools<81 and tensorflow-cpu"
    pip install --upgrade pip
    # setuptools<81: tensorflow_hub 0.16.1 imports pkg_resources, removed in setuptools 81.
    pip install "setuptools<81" tensorflow-cpu

    # tf-keras must match tensorflow's major.minor; pin it to the tensorflow just installed.
    local tf_minor
    tf_minor=$("$py" -c 'import importlib.metadata as m; print(".".join(m.version("tensorflow-cpu").split(".")[:2]))')
    log "installing tensorflow-hub==$TFHUB_VERSION and tf-keras~=$tf_minor.0 (--no-deps)"
    pip install --no-deps "tensorflow-hub==$TFHUB_VERSION" "tf-keras~=$tf_minor.0"

    # Imports tensorflow_hub needs that --no-deps skipped (numpy and protobuf come with
    # tensorflow), plus hubcache's own runtime dependencies.
    pip install "urllib3>=2.0" "tqdm>=4.60"
}

build_env
