#!/bin/bash
# Installs what real-VM tests need on the host: qemu-system-x86 (with qemu-utils) and the
# tools guest/build.sh uses. Idempotent. Run as root.
#
# These machines ship qemu-utils from bookworm-backports, which Debian 12's own
# qemu-system-x86 refuses to sit beside (qemu-system-common Breaks), so qemu-system-x86
# then comes from bookworm-backports too, through a private apt state that leaves the
# system's sources untouched.
set -euo pipefail

log() { echo "guest/install-deps.sh: $*" >&2; }

missing=()
command -v cpio >/dev/null || missing+=(cpio)
command -v flock >/dev/null || missing+=(util-linux)
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null \
        || { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
fi

if command -v qemu-system-x86_64 >/dev/null && command -v qemu-img >/dev/null; then
    exit 0
fi

utils_version=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
if [[ "$utils_version" != *bpo* ]]; then
    log "installing qemu-system-x86 and qemu-utils from the system's sources"
    apt-get install -y --no-install-recommends qemu-system-x86 qemu-utils >/dev/null \
        || { apt-get update >/dev/null && apt-get install -y --no-install-recommends qemu-system-x86 qemu-utils >/dev/null; }
    exit 0
fi

log "qemu-utils $utils_version is from backports: installing qemu-system-x86 from bookworm-backports"
state=$(mktemp -d /tmp/hafen-apt.XXXXXX)
trap 'rm -rf "$state"' EXIT
mkdir -p "$state/lists/partial" "$state/archives/partial"
# The backports suite is added to the machine's own configured archive (no host is named
# here): deb822 files get the suite appended, one-line lists get a copied line.
mkdir -p "$state/parts"
: > "$state/sources.list"
for file in /etc/apt/sources.list.d/*.sources; do
    [ -e "$file" ] || continue
    sed -E 's/^(Suites:.*[[:space:]]bookworm([[:space:]].*)?)$/\1 bookworm-backports/' "$file" > "$state/parts/$(basename "$file")"
done
for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -e "$file" ] || continue
    grep -E '^deb[[:space:]].*[[:space:]]bookworm[[:space:]]' "$file" | sed -E 's/[[:space:]]bookworm[[:space:]]/ bookworm-backports /' >> "$state/sources.list" || true
    grep -E '^deb[[:space:]]' "$file" >> "$state/sources.list" || true
done
apt_options=(
    -o "Dir::Etc::sourcelist=$state/sources.list"
    -o "Dir::Etc::sourceparts=$state/parts"
    -o "Dir::State::lists=$state/lists"
    -o "Dir::Cache::archives=$state/archives"
    -o "DPkg::Lock::Timeout=300"
)
apt-get "${apt_options[@]}" update >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get "${apt_options[@]}" install -y --no-install-recommends \
    -t bookworm-backports qemu-system-x86 >/dev/null
command -v qemu-system-x86_64 >/dev/null || { log "error: qemu-system-x86_64 still missing"; exit 1; }
