#!/usr/bin/env bash
# Installs a local Label Studio server into its own virtual environment.
#
#   scripts/install_labelstudio.sh           # <repo>/.venv-labelstudio with label-studio
#   scripts/install_labelstudio.sh --force   # delete that venv and install afresh
#
# label-studio pins ~80 packages exactly (Django, numpy, ...), which clash with
# FiftyOne's, so it never goes into .venv: it gets a venv of its own, and
# dataops only ever runs its `label-studio` executable as a separate process
# (`dataops labelstudio serve`, the tests' `label_studio` fixture; see
# dataops.labelstudio_server.find_label_studio).
#
# Installer: the uv in <repo>/.venv/bin/uv (scripts/install.sh puts it there),
# else a uv on PATH, else `python -m venv` + pip (slower). With a warm cache uv
# takes ~10 s, pip ~2 min; the venv is ~800 MB.
#
# Re-running is cheap: a stamp in the venv holds a hash of this script and the
# version; when it matches and the installed version is right, the script
# exits at once.
#
# Environment: DATAOPS_LABEL_STUDIO_VENV (venv path, default
# <repo>/.venv-labelstudio), PYTHON (interpreter to create it with, >= 3.10),
# DATAOPS_INSTALLER=pip (skip uv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LS_VENV="${DATAOPS_LABEL_STUDIO_VENV:-$ROOT/.venv-labelstudio}"
LS_VERSION="1.23.2"
INSTALLER="${DATAOPS_INSTALLER:-uv}"
FORCE=0
STAMP_NAME=".dataops-labelstudio-stamp"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case "$1" in
        --force) FORCE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install_labelstudio.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done

case "$LS_VENV" in /*) ;; *) LS_VENV="$PWD/$LS_VENV" ;; esac
T0=$(date +%s)

log() { printf '[install-labelstudio] %s\n' "$*"; }
die() { printf '[install-labelstudio] ERROR: %s\n' "$*" >&2; exit 1; }
since() { echo "$(( $(date +%s) - ${1:-$T0} ))s"; }

# Installed label-studio version, without starting it (`label-studio --version`
# boots the whole Django app and does not return).
installed_version() {
    "$LS_VENV/bin/python" -c \
        'import importlib.metadata as m; print(m.version("label-studio"))' 2>/dev/null
}

smoke_check() {
    [ -x "$LS_VENV/bin/label-studio" ] || return 1
    [ "$(installed_version)" = "$LS_VERSION" ] || return 1
}

hash_inputs() {
    { cat "${BASH_SOURCE[0]}"; printf 'version=%s\n' "$LS_VERSION"; } | sha256sum | cut -d' ' -f1
}

# --- serialize concurrent runs on the same venv -------------------------------
if command -v flock >/dev/null 2>&1; then
    LOCK="${TMPDIR:-/tmp}/dataops-install-labelstudio-$(printf '%s' "$LS_VENV" | sha256sum | cut -c1-12).lock"
    exec 9>"$LOCK"
    if ! flock -n 9; then
        log "another install into $LS_VENV is running; waiting for it ..."
        flock 9
    fi
fi

HASH="$(hash_inputs)"
STAMP="$LS_VENV/$STAMP_NAME"

if [ "$FORCE" = 0 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ] && smoke_check; then
    log "up to date: $LS_VENV (label-studio $LS_VERSION; --force to reinstall) [$(since)]"
    exit 0
fi

# --- the installer --------------------------------------------------------------
UV=""
if [ "$INSTALLER" = uv ]; then
    if [ -x "$ROOT/.venv/bin/uv" ]; then
        UV="$ROOT/.venv/bin/uv"
    elif command -v uv >/dev/null 2>&1; then
        UV="$(command -v uv)"
    else
        log "no uv in $ROOT/.venv/bin or on PATH; using python -m venv + pip (slower)"
        INSTALLER=pip
    fi
fi

# A real interpreter path (not a pyenv shim), so that uv never tries to
# download a Python (the machine may be offline).
find_python() {
    local c
    for c in "${PYTHON:-}" python3.11 python3.12 python3.10 python3.13 python3; do
        [ -n "$c" ] || continue
        command -v "$c" >/dev/null 2>&1 || continue
        if "$c" -c 'import sys, venv; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
            "$c" -c 'import sys; print(sys.executable)'; return 0
        fi
    done
    return 1
}

# --- 1. the virtual environment -------------------------------------------------
if [ "$FORCE" = 1 ] && [ -e "$LS_VENV" ]; then
    log "--force: removing $LS_VENV"
    rm -rf "$LS_VENV"
fi
if [ -e "$LS_VENV" ] && ! "$LS_VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "$LS_VENV is broken (no working bin/python); recreating it"
    rm -rf "$LS_VENV"
fi
if [ ! -e "$LS_VENV" ]; then
    PY="$(find_python)" || die "need Python >= 3.10 with the venv module (set PYTHON=/path/to/python)"
    log "creating $LS_VENV with $PY ($("$PY" -V 2>&1)) ($INSTALLER)"
    if [ "$INSTALLER" = uv ]; then
        UV_PYTHON_DOWNLOADS=never "$UV" venv -q --python "$PY" "$LS_VENV"
    else
        "$PY" -m venv "$LS_VENV"
    fi
fi
rm -f "$STAMP"
VPY="$LS_VENV/bin/python"

# --- 2. label-studio ------------------------------------------------------------
t=$(date +%s)
log "installing label-studio==$LS_VERSION into $LS_VENV ($INSTALLER) ..."
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ "$INSTALLER" = uv ]; then
    UV_PYTHON_DOWNLOADS=never "$UV" pip install -q --python "$VPY" "label-studio==$LS_VERSION"
else
    "$VPY" -m pip install -q "label-studio==$LS_VERSION"
fi
log "step done in $(since "$t")"

# --- 3. verify --------------------------------------------------------------------
t=$(date +%s)
log "verifying ..."
[ -x "$LS_VENV/bin/label-studio" ] || die "no executable $LS_VENV/bin/label-studio after the install"
GOT="$(installed_version)" || die "label-studio is not importable in $LS_VENV"
[ "$GOT" = "$LS_VERSION" ] || die "installed label-studio is $GOT, wanted $LS_VERSION"
"$VPY" -c 'import label_studio, django' || die "import label_studio failed in $LS_VENV"
log "  label-studio: $GOT ($LS_VENV/bin/label-studio)"
log "verified in $(since "$t")"

echo "$HASH" > "$STAMP"
log "done: $LS_VENV ($(du -sh "$LS_VENV" 2>/dev/null | cut -f1)) in $(since)"
log "start a server with: dataops labelstudio serve (see its --help)"
