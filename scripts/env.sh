# Sourced by ./run-lab and ./run-tests: create or reuse .venv with mnistlab and its pinned
# dependencies, reinstalling only when pyproject.toml changes.
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
# The optional extras to install besides dev: run-tests asks for those its tests need.
extras=${MNISTLAB_EXTRAS:-dev}
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1) $extras"
if [ "$(cat "$venv/.mnistlab-installed" 2>/dev/null)" != "$want" ]; then
  echo "Installing mnistlab[$extras] and its pinned dependencies into $venv (a minute or two)" >&2
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e "$root[$extras]"
  echo "$want" > "$venv/.mnistlab-installed"
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
