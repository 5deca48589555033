#!/usr/bin/env bash
# Build the modelled-cycles QEMU plugin into BUILD_DIR (default: build/qemu-plugin).
#
# Debian's qemu-system-arm accepts -plugin but ships no qemu-plugin.h: the header of the
# installed QEMU version is taken from Debian's qemu *source* package (a private deb-src list,
# `apt-get source --download-only`, the one file extracted from the orig tarball) into the
# build folder. Nothing of QEMU is kept in the repository. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$(mkdir -p "${1:-build/qemu-plugin}" && cd "${1:-build/qemu-plugin}" && pwd)"
header="$build/include/qemu-plugin.h"
lib="$build/libqmcu_cycles.so"
if [ ! -s "$header" ]; then
  version="$(dpkg-query -W -f='${source:Version}' qemu-system-arm)"
  src="$build/qemu-src"
  mkdir -p "$src/sources.list.d" "$src/lists/partial" "$src/cache" "$build/include"
  : > "$src/empty.list"
  # the machine's Debian sources, as deb-src
  sed 's/^Types:.*$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
    > "$src/sources.list.d/debian-src.sources"
  opts=(-o "Dir::Etc::SourceList=$src/empty.list" -o "Dir::Etc::SourceParts=$src/sources.list.d"
        -o "Dir::State::Lists=$src/lists" -o "Dir::Cache=$src/cache")
  echo "qemu plugin: fetching qemu-plugin.h from Debian's qemu $version source package" >&2
  apt-get -qq "${opts[@]}" update
  (cd "$src" && apt-get -qq "${opts[@]}" source --download-only "qemu=$version" 2>&1 | grep -v "unsandboxed" || true)
  ls "$src"/qemu_*.orig.tar.* >/dev/null 2>&1 || { echo "qemu plugin: could not download the qemu $version source package (deb-src)" >&2; exit 1; }
  orig="$(ls "$src"/qemu_*.orig.tar.* | head -n1)"
  tar -xf "$orig" -C "$src" --wildcards '*/include/qemu/qemu-plugin.h'
  cp "$(find "$src" -name qemu-plugin.h | head -n1)" "$header"
  rm -rf "$src"
fi
if [ ! -s "$lib" ] || [ "$here/qmcu_cycles.c" -nt "$lib" ] || [ "$header" -nt "$lib" ]; then
  gcc -O2 -shared -fPIC -Wall -Wextra -I"$build/include" -o "$lib" "$here/qmcu_cycles.c"
fi
