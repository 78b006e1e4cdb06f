#!/usr/bin/env bash
# The Python package as a user gets it: `pip wheel` from the source tree (build
# isolation: scikit-build-core comes from PyPI), the wheel installed into a
# fresh virtual environment (NumPy and torch from the system's site-packages),
# then the tests run from outside the source tree against the installed copy.
# Also checks that the extension needs no libfattn.so (linked in) and no RPATH.
# Usage: wheel_check.sh PYTHON SOURCE_DIR WORK_DIR
set -euo pipefail
py=$1 src=$2 work=$3
rm -rf "$work"
mkdir -p "$work/wheels"
echo "== pip wheel $src"
"$py" -m pip wheel --no-deps --quiet -w "$work/wheels" "$src"
whl=$(ls "$work"/wheels/fattn-*.whl)
echo "== built $(basename "$whl")"
"$py" -m venv --system-site-packages "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --no-deps --no-index "$whl"
cp -r "$src/python/tests" "$work/tests"
cd "$work"
"$work/venv/bin/python" - <<'PY'
import glob, os, subprocess, sys
import fattn
where = os.path.dirname(fattn.__file__)
assert where.startswith(sys.prefix), f"imported {where}, not the installed wheel"
ext = glob.glob(os.path.join(where, "_C*.so"))[0]
ldd = subprocess.run(["ldd", ext], capture_output=True, text=True, check=True).stdout
assert "libfattn" not in ldd and "not found" not in ldd, ldd
dyn = subprocess.run(["readelf", "-d", ext], capture_output=True, text=True).stdout
assert "RPATH" not in dyn and "RUNPATH" not in dyn, dyn
print("installed:", where, "| version", fattn.__version__, "| isa", fattn.runtime_info()["isa_selected"])
PY
"$work/venv/bin/python" -m pytest -q -p no:cacheprovider -rs "$work/tests"
