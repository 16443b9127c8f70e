#!/usr/bin/env bash
# allama on a free-threaded CPython (3.13t, no GIL): builds the interpreter once, makes .venv-ft
# with allama built for it (build/ft), and runs the tests that can run there.
#
#   bash scripts/free_threaded.sh            # then: source .venv-ft/bin/activate
#   bash scripts/free_threaded.sh -k engine  # extra arguments go to pytest
#
# Debian bookworm packages no free-threaded CPython, so the interpreter is built from the
# source package of Debian 13's python3.13 (the upstream tarball it ships, checked against the
# sha256 below), fetched with apt from the mirror this machine's apt already uses, through a
# source list of its own (the system's apt setup is left as it is). It goes to
# .cache/python<version>-ft; later runs reuse it. Run scripts/bootstrap.sh first: the
# llama.cpp tree and the compiler cache come from there.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=3.13.5
DEBIAN_SUITE=trixie
ORIG=python3.13_${VERSION}.orig.tar.xz
ORIG_SHA256=93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640
PREFIX="$PWD/.cache/python${VERSION}-ft"
PYTHON_FT="$PREFIX/bin/python3.13t"

if [ ! -x "$PYTHON_FT" ]; then
    # the headers of what pip and the tests need in the interpreter (ssl, zlib, ctypes, lzma, bz2)
    need=()
    for package in libssl-dev libffi-dev zlib1g-dev libbz2-dev liblzma-dev; do
        dpkg -s "$package" >/dev/null 2>&1 || need+=("$package")
    done
    if [ ${#need[@]} -gt 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need[@]}"
    fi
    work=$(mktemp -d)
    chmod 755 "$work"  # (apt fetches as its own user)
    trap 'rm -rf "$work"' EXIT
    # the first Debian archive this machine's apt reads from
    mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null \
             | grep -v security | head -n1 || true)
    if [ -z "$mirror" ]; then
        mirror=$(awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    fi
    if [ -z "$mirror" ]; then
        echo "free_threaded.sh: no Debian archive found in apt's sources" >&2
        exit 1
    fi
    mkdir -p "$work/lists/partial" "$work/archives/partial"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $DEBIAN_SUITE main" \
        > "$work/sources.list"
    apt_options=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
                 -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::Archives=$work/archives")
    apt-get -qq "${apt_options[@]}" update
    (cd "$work" && apt-get -qq "${apt_options[@]}" source --download-only python3.13)
    echo "$ORIG_SHA256  $work/$ORIG" | sha256sum --check --quiet
    tar -xf "$work/$ORIG" -C "$work"
    (
        cd "$work/Python-$VERSION"
        ./configure --quiet --disable-gil --prefix="$PREFIX" --with-ensurepip=install
        make --quiet -j"$(nproc)"
        make --quiet install
    ) > "$work/build.log" 2>&1 || { tail -n 40 "$work/build.log" >&2; exit 1; }
    if ! "$PYTHON_FT" -c "import ssl, zlib, ctypes, lzma, bz2"; then
        rm -rf "$PREFIX"
        echo "free_threaded.sh: the interpreter was built without a module pip or the tests need" >&2
        exit 1
    fi
fi

if [ ! -x .venv-ft/bin/python ]; then
    "$PYTHON_FT" -m venv .venv-ft
fi
# shellcheck disable=SC1091
source .venv-ft/bin/activate
python -m pip install --quiet --upgrade pip
# Only what has free-threaded wheels: the server's pydantic-core, and hypothesis and jsonschema
# (Rust parts), have none here; the tests that need them are left out below.
python -m pip install --quiet --only-binary=numpy "scikit-build-core>=0.10" "nanobind>=2.4" cmake ninja \
    numpy anyio jinja2 aiofiles "pytest>=8" "pytest-timeout>=2.2" "trio>=0.26"
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true
python -m pip install --quiet --no-build-isolation --no-deps \
    -Cbuild-dir=build/ft -Ceditable.rebuild=false -Ceditable.verbose=false -e .
python -m pip install --quiet ./vendor/llama.cpp/gguf-py

# The engine, the native module, threads and process life: where a missing GIL could show.
# Left out: what imports the server (pydantic), hypothesis or jsonschema, and uvloop (no
# free-threaded 3.13 wheel).
status=0
python -m pytest -q -ra -p no:cacheprovider \
    tests/test_free_threaded.py tests/engine tests/native tests/test_llama.py tests/test_process_lifecycle.py \
    tests/test_loop_thread.py tests/test_llama_cpp_low_level.py tests/test_session.py tests/test_logits_processing.py \
    --ignore=tests/engine/test_kv_streams.py \
    --deselect "tests/test_process_lifecycle.py::test_scripts_that_never_close_exit_promptly[mounted_server_app]" \
    --deselect "tests/test_process_lifecycle.py::test_scripts_that_never_close_exit_promptly[uvloop_no_close]" \
    --deselect "tests/test_process_lifecycle.py::test_scripts_that_never_close_exit_promptly[uvloop_half_read_stream]" \
    --deselect "tests/test_process_lifecycle.py::test_an_unhandled_ctrl_c_while_reading_an_async_stream_ends_the_process_at_once[uvloop]" \
    "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure, not a pass" >&2
    exit 1
fi
exit "$status"
