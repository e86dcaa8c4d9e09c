#!/usr/bin/env bash
# Put onnxruntime's C API header into build/include/onnxruntime/, without installing anything.
# No PyPI or npm package ships onnxruntime_c_api.h; Debian trixie's libonnxruntime-dev does. This
# fetches that .deb with `apt-get download` into a private apt directory (its own source list,
# lists and cache under build/apt; the system's apt state is never touched) and unpacks the header.
# The archive is the host's own Debian mirror (read from its apt sources; DEBIAN_MIRROR overrides),
# and apt checks the Release signature with the host's debian-archive-keyring.
set -euo pipefail
cd "$(dirname "$0")"
suite="${DEBIAN_SUITE:-trixie}"
keyring="${DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}"
mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  mirror=$(
    {
      grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources || true
      grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | sed 's/\[[^]]*\]//' || true
    } | awk '{print $2}' | grep -v -e security -e nodesource -e cloud | head -n 1 || true
  )
fi
[ -n "$mirror" ] || { echo "fetch_header.sh: no Debian mirror in the apt sources; set DEBIAN_MIRROR" >&2; exit 1; }
command -v apt-get >/dev/null || { echo "fetch_header.sh: needs apt-get (Debian or Ubuntu)" >&2; exit 1; }
[ -r "$keyring" ] || { echo "fetch_header.sh: no keyring $keyring (apt-get install debian-archive-keyring)" >&2; exit 1; }

apt_dir="$PWD/build/apt"
rm -rf "$apt_dir" build/include
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/sources" "$apt_dir/deb" build/include
printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' "$mirror" "$suite" "$keyring" \
  > "$apt_dir/sources/$suite.sources"
: > "$apt_dir/status"
opts=(
  -o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$apt_dir/sources"
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o "Dir::State::Status=$apt_dir/status"
  -o "APT::Architecture=amd64" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root"
)
apt-get "${opts[@]}" -qq update
(cd "$apt_dir/deb" && apt-get "${opts[@]}" -qq download libonnxruntime-dev)
deb=$(ls "$apt_dir"/deb/libonnxruntime-dev_*.deb)
dpkg-deb -x "$deb" "$apt_dir/root"
cp -r "$apt_dir/root/usr/include/onnxruntime" build/include/
echo "fetch_header.sh: $(basename "$deb") -> build/include/onnxruntime/onnxruntime_c_api.h" \
  "($(grep -m1 '#define ORT_API_VERSION' build/include/onnxruntime/onnxruntime_c_api.h))"
