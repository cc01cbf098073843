# Sourced by .ci/tf-env.sh and .ci/keras-env.sh: make (or reuse) a separate virtual
# environment for tests that need heavy libraries. The sourcing script sets
#   name     its log prefix          venv   the environment's folder
#   base     the base interpreter (empty: python3.11, else python3)
# and defines check() (exit 0 when the env is usable) and install() (pip installs into it),
# then calls build_env. Progress goes to stderr; the LAST stdout line is the env's python.

py="$venv/bin/python"

log() { printf '%s: %s\n' "$name" "$*" >&2; }

pip() { "$py" -m pip --disable-pip-version-check --no-input -q "$@" >&2; }

build_env() {
    if [ -x "$py" ] && check 2>/dev/null; then
        log "reusing $venv"
        printf '%s\n' "$py"
        exit 0
    fi
    if [ -z "$base" ]; then
        if command -v python3.11 >/dev/null 2>&1; then base=python3.11; else base=python3; fi
    fi
    local start=$SECONDS
    if ! "$py" -c 'import sys' >/dev/null 2>&1; then
        # Missing or broken (e.g. its base python went away): make it anew.
        log "creating $venv with $base ($("$base" --version 2>&1))"
        mkdir -p "$(dirname "$venv")"
        "$base" -m venv --clear "$venv"
    fi
    install
    if ! check; then
        log "the environment at $venv is not usable; see the error above"
        exit 1
    fi
    log "ready in $((SECONDS - start)) s: $(du -sh "$venv" | cut -f1)"
    printf '%s\n' "$py"
}
