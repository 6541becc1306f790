# Sourced by ./run-lab and ./run-tests: create or reuse .venv with mnistlab, the extras asked
# for and the versions constraints.txt pins, installing only when pyproject.toml or
# constraints.txt changes or an extra is missing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
python=${PYTHON:-python3}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: mnistlab needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "Creating $venv" >&2
  "$python" -m venv "$venv"
fi
# The extras to install: run-lab needs none, run-tests asks for those its tests need. Both share
# .venv, so install the union of these and those installed before: run-lab after run-tests
# installs nothing and removes nothing (delete .venv for a lab-only one).
stamp="$venv/.mnistlab-installed"  # "HASH EXTRAS" of the last install
had_hash="" had_extras=""
if [ -f "$stamp" ]; then read -r had_hash had_extras < "$stamp" || true; fi
extras=$(echo "${MNISTLAB_EXTRAS:-},$had_extras" | tr , '\n' | sed '/^$/d' | sort -u | paste -sd, -)
hash=$(cat "$root/pyproject.toml" "$root/constraints.txt" | sha256sum | cut -d' ' -f1)
if [ "$hash $extras" != "$had_hash $had_extras" ]; then
  echo "Installing mnistlab${extras:+[$extras]} with constraints.txt's versions into $venv" \
    "(a minute or two)" >&2
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -c "$root/constraints.txt" \
    -e "$root${extras:+[$extras]}"
  echo "$hash $extras" > "$stamp"
fi

# Fashion-MNIST's registry copy is Debian's package; install it where apt can. Without it
# mnistlab fetches the same .deb with `apt-get download`, or the official download.
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null \
   && [ "$(id -u)" = 0 ]; then
  echo "Installing Debian's dataset-fashion-mnist" >&2
  { apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; }; } \
    || echo "note: could not install dataset-fashion-mnist; mnistlab will fetch it when needed" >&2
fi
export PATH="$venv/bin:$PATH"
