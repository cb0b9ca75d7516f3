#!/usr/bin/env bash
# Copies pytest and its pure-Python dependencies from the local venv into build/gpu_pydeps,
# small enough to carry to a GPU machine that has torch but no pytest and no internet.
set -euo pipefail
cd "$(dirname "$0")/.."
site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
dest=build/gpu_pydeps
rm -rf "$dest"
mkdir -p "$dest"
for name in pytest _pytest pluggy iniconfig packaging py.py; do
  [ -e "$site/$name" ] && cp -r "$site/$name" "$dest/"
done
echo "copied pytest into $dest ($(du -sh "$dest" | cut -f1))"
