#!/usr/bin/env bash
# One entry point that does all set-up on a fresh machine, then runs a job.
#
#   ./run.sh flowers [options]   the flowers job (python -m tflite_transfer flowers ...)
#   ./run.sh test [pytest args]  the test suite
#   ./run.sh asan                reader, image-pipeline, engine-smoke, thread and backward/fine-tuning tests under ASan+UBSan
#   ./run.sh bench               the benchmarks in benchmarks/
#   ./run.sh classify [images]   top-5 ImageNet classes of photos (default: ../shared/images)
#
# Set-up (idempotent): Debian's libstb-dev if stb_image.h is missing (needs root or sudo),
# a virtual environment in $TT_VENV (default ./.venv) with the package installed editable
# (the C extension is built in place) and the test extras with Dask ([distributed]) (TT_WITH_TF=1: TensorFlow too).
# Offline data: if ../shared exists next to the checkout (or $TFLITE_TRANSFER_SHARED names it, as for
# the tests) and the variables are unset,
# TFLITE_TRANSFER_MIRROR points at ../shared/models and ../shared/images (the .tflite files
# and the ImageNet labels, checked by SHA-256)
# and TFLITE_TRANSFER_FLOWERS at ../shared/flower_photos; otherwise files are downloaded
# into $TFLITE_TRANSFER_HOME (default ~/.cache/tflite_transfer).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV=${TT_VENV:-$ROOT/.venv}
cmd=${1:-help}
[ $# -gt 0 ] && shift

ensure_stb() {
    [ -f /usr/include/stb/stb_image.h ] && return 0
    echo "run.sh: installing Debian's libstb-dev (stb_image.h)" >&2
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq libstb-dev >/dev/null
}

ensure_venv() {
    ensure_stb
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
    fi
    # shellcheck disable=SC1091
    . "$VENV/bin/activate"
    local stamp="$VENV/.tt_installed"
    local want
    local extras="test,report,distributed"
    # TT_WITH_TF=1 also installs TensorFlow, so the Keras-parity tests run instead of
    # being reported as skipped (CI sets it).
    [ "${TT_WITH_TF:-0}" = 1 ] && extras="$extras,tf"
    want=$( (cat "$ROOT/pyproject.toml" "$ROOT/setup.py"; echo "$extras") | sha256sum | cut -c1-16)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        python -m pip install -q --upgrade pip
        python -m pip install -q "numpy>=2.0" "setuptools>=77" wheel \
            "onednn-cpu-gomp==2023.2.0" "onednn-devel-cpu-gomp==2023.2.0"
        python -m pip install -q --no-build-isolation -e "$ROOT[$extras]"
        echo "$want" >"$stamp"
    fi
    # Rebuild the extension when a C file changed (cheap when nothing did).
    (cd "$ROOT" && python setup.py -q build_ext --inplace >/dev/null)
}

shared_defaults() {
    local shared="${TFLITE_TRANSFER_SHARED:-$ROOT/../shared}"
    if [ -d "$shared/models" ] && [ -z "${TFLITE_TRANSFER_MIRROR:-}" ]; then
        export TFLITE_TRANSFER_MIRROR="$(cd "$shared/models" && pwd):$(cd "$shared/images" && pwd)"
    fi
    if [ -d "$shared/flower_photos" ] && [ -z "${TFLITE_TRANSFER_FLOWERS:-}" ]; then
        export TFLITE_TRANSFER_FLOWERS="$(cd "$shared/flower_photos" && pwd)"
    fi
}

case "$cmd" in
flowers)
    ensure_venv; shared_defaults
    exec python -m tflite_transfer flowers "$@" ;;
classify)
    ensure_venv; shared_defaults
    if [ $# -eq 0 ] && [ -d "$ROOT/../shared/images" ]; then set -- "$ROOT/../shared/images"; fi
    exec python -m tflite_transfer classify "$@" ;;
test)
    ensure_venv
    cd "$ROOT"
    exec python -m pytest tests "$@" ;;
asan)
    ensure_venv
    cd "$ROOT"
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    # A separate sanitized copy of the extension, so the normal build is untouched.
    cp -r tflite_transfer "$build/"
    TT_SANITIZE=1 python setup.py -q build_ext --build-temp "$build/tmp" --build-lib "$build" --force >/dev/null
    export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    export TT_SANITIZED_BUILD="$build"
    # Run from the sanitized copy so that it, not the source tree, is imported (checked).
    cd "$build"
    export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
    python -c "import sys, tflite_transfer._core as c; f = c.__file__; print('asan: testing', f); \
sys.exit(0 if f.startswith('$build') else 'asan: imported the wrong extension: ' + f)"
    python -m pytest -p no:cacheprovider --rootdir "$ROOT" \
        "$ROOT/tests/test_reader.py" "$ROOT/tests/test_decode.py" "$ROOT/tests/test_dataset.py" \
        "$ROOT/tests/test_resize.py" "$ROOT/tests/test_augment.py" "$ROOT/tests/test_engine_smoke.py" \
        "$ROOT/tests/test_threads.py" "$ROOT/tests/test_backward.py" "$ROOT/tests/test_finetune_fit.py" "$@" ;;
bench)
    ensure_venv; shared_defaults
    cd "$ROOT"
    for b in benchmarks/bench_*.py; do python "$b"; done ;;
*)
    sed -n '2,20p' "$0"; exit 2 ;;
esac
