#!/usr/bin/env bash
# Installs the built library into a scratch prefix and builds examples/ as an
# outside consumer: once through find_package(fattn) (shared and static
# targets) and once through pkg-config (shared, and static with Libs.private).
set -euo pipefail
build=$1 src=$2 cc=${3:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" > "$tmp/install.log"
libdir=$(dirname "$(find "$prefix" -name 'libfattn.a' | head -n1)")
echo "== installed into $prefix (libdir $libdir)"

echo "== find_package(fattn)"
cmake -S "$src/examples" -B "$tmp/ex" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" > "$tmp/cfg.log"
cmake --build "$tmp/ex" > "$tmp/build.log"
LD_LIBRARY_PATH=$libdir "$tmp/ex/sdpa_basic"
"$tmp/ex/sdpa_basic_static"
for ex in mha_pipeline mha_sentence encoder_tiny generate train_tiny; do
  LD_LIBRARY_PATH=$libdir "$tmp/ex/$ex" > "$tmp/$ex.out" || { cat "$tmp/$ex.out"; exit 1; }
  echo "$ex: $(wc -l < "$tmp/$ex.out") lines, ok"
done
if ldd "$tmp/ex/sdpa_basic_static" | grep -q libfattn; then
  echo "sdpa_basic_static links libfattn.so: static target is wrong"; exit 1
fi

echo "== pkg-config fattn"
export PKG_CONFIG_PATH=$libdir/pkgconfig
"$cc" "$src/examples/sdpa_basic.c" $(pkg-config --cflags --libs fattn) -lm -o "$tmp/pc_shared"
LD_LIBRARY_PATH=$libdir "$tmp/pc_shared"
"$cc" "$src/examples/sdpa_basic.c" $(pkg-config --cflags fattn) "$libdir/libfattn.a" \
  $(pkg-config --static --libs-only-other --libs-only-l fattn | sed 's/-lfattn//') -lm -o "$tmp/pc_static"
"$tmp/pc_static"
n=4
# fattn_mpi, when this build has it: find_package's fattn::fattn_mpi and
# pkg-config fattn-mpi, each run on 2 ranks under mpirun.
if [ -f "$prefix/include/fattn_mpi.h" ]; then
  echo "== fattn_mpi: find_package(fattn) -> fattn::fattn_mpi, pkg-config fattn-mpi"
  [ -x "$tmp/ex/ring_attention" ] || { echo "ring_attention was not built: fattn::fattn_mpi missing"; exit 1; }
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  LD_LIBRARY_PATH=$libdir mpirun -np 2 --oversubscribe "$tmp/ex/ring_attention"
  "$cc" "$src/examples/ring_attention.c" $(pkg-config --cflags --libs fattn-mpi) -lm -o "$tmp/pc_mpi"
  LD_LIBRARY_PATH=$libdir mpirun -np 2 --oversubscribe "$tmp/pc_mpi"
  n=6
fi
echo "consumer builds: $n passed (and 4 layer / engine examples), 0 failed"
