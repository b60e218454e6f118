#!/bin/sh
# Runs one bench workload inside the build step and prints key=value lines: its own
# duration, measured around the work only with the kernel's clock (/proc/uptime, so
# QEMU's start-up of this script does not count), what it printed, and the tool used.
# Usage: run.sh c-compile|python
set -eu
now() { cut -d' ' -f1 /proc/uptime; }
cd /tmp
case "$1" in
    c-compile)
        start=$(now)
        gcc -O0 -o /tmp/program-O0 /bench/c-compile.c
        gcc -O2 -o /tmp/program-O2 /bench/c-compile.c
        output=$(/tmp/program-O2)
        end=$(now)
        tool="gcc $(gcc -dumpfullversion)" ;;
    python)
        start=$(now)
        output=$(python3 /bench/python.py)
        end=$(now)
        tool=$(python3 --version) ;;
    *)
        echo "unknown workload: $1" >&2; exit 2 ;;
esac
echo "seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')"
echo "output=$output"
echo "tool=$tool"
echo "uname=$(uname -m)"
