#!/bin/sh
# Usage: rootfs.sh BINARY OUTDIR
# Lays out a minimal root filesystem for BINARY in OUTDIR: the binary as
# /usr/local/bin/credproxy, every shared library `ldd` lists (the dynamic loader included),
# the system CA bundle (upstream TLS verification needs it), and passwd/group entries for the
# unprivileged user 65532. Used by the Containerfile's build stage and by the tests, so what the
# tests check is what the image gets.
set -eu
bin=$1
out=$2
mkdir -p "$out/usr/local/bin" "$out/etc/ssl/certs" "$out/etc/credproxy" "$out/tmp"
chmod 1777 "$out/tmp"
cp "$bin" "$out/usr/local/bin/credproxy"
# `name => /path (0x…)` lines, and the loader's own `/lib64/ld-linux-x86-64.so.2 (0x…)` line.
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
  while read -r lib; do
    mkdir -p "$out$(dirname "$lib")"
    cp -L "$lib" "$out$lib"
  done
cp -L /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/ca-certificates.crt"
echo "credproxy:x:65532:65532:credproxy:/nonexistent:/sbin/nologin" >"$out/etc/passwd"
echo "credproxy:x:65532:" >"$out/etc/group"
