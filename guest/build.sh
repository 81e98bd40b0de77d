#!/bin/bash
# Builds the hafen test guest (a Debian cloud kernel and a busybox initramfs) from Debian
# packages only, and caches it outside the git tree so that every test and demo reuses it.
#
# Usage: guest/build.sh
# Output dir: $HAFEN_GUEST_DIR, else $XDG_CACHE_HOME/hafen/guest, else ~/.cache/hafen/guest.
# Prints three shell-evaluable lines on stdout (everything else goes to stderr):
#   HAFEN_GUEST_KERNEL=<path of vmlinuz>
#   HAFEN_GUEST_INITRD=<path of initrd.img>
#   HAFEN_GUEST_CMDLINE=<kernel arguments every boot needs>
# The build is idempotent: it is redone only when the files under guest/ change.
set -euo pipefail

guest_source_dir=$(cd "$(dirname "$0")" && pwd)
cache_root=${XDG_CACHE_HOME:-${HOME:-/root}/.cache}
output_dir=${HAFEN_GUEST_DIR:-$cache_root/hafen/guest}
kernel_meta_package=linux-image-cloud-amd64
busybox_package=busybox-static
# Modules the guest needs that the cloud kernel builds as modules (checked against
# modules.builtin below): virtio transport, disk, network, and the ACPI power button
# with its input device, which busybox acpid reads.
wanted_modules="virtio_pci virtio_blk virtio_net button evdev"
cmdline="console=ttyS0 no_timer_check panic=-1"

log() { echo "guest/build.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

print_result() {
    echo "HAFEN_GUEST_KERNEL=$output_dir/vmlinuz"
    echo "HAFEN_GUEST_INITRD=$output_dir/initrd.img"
    echo "HAFEN_GUEST_CMDLINE=\"$cmdline\""
}

# The stamp covers this script and the guest's root filesystem, so editing either rebuilds.
source_stamp() {
    (cd "$guest_source_dir" && find build.sh rootfs -type f | LC_ALL=C sort | xargs sha256sum) \
        | sha256sum | cut -d' ' -f1
}

mkdir -p "$output_dir"
stamp=$(source_stamp)
if [ -f "$output_dir/stamp" ] && [ "$(cat "$output_dir/stamp")" = "$stamp" ] \
    && [ -f "$output_dir/vmlinuz" ] && [ -f "$output_dir/initrd.img" ]; then
    print_result
    exit 0
fi

# Parallel test binaries may call this at once: one builds, the others wait for it.
exec 9>"$output_dir/.lock"
flock -w 600 9 || die "timed out waiting for the build lock $output_dir/.lock"
if [ -f "$output_dir/stamp" ] && [ "$(cat "$output_dir/stamp")" = "$stamp" ] \
    && [ -f "$output_dir/vmlinuz" ] && [ -f "$output_dir/initrd.img" ]; then
    print_result
    exit 0
fi

for tool in apt-get apt-cache dpkg-deb cpio gzip find sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (install it with apt-get)"
done

deb_dir="$output_dir/debs"
mkdir -p "$deb_dir"

# Resolves a package to the file name apt would download; returns nothing when the
# package lists do not know it (fresh machine), so the caller runs apt-get update once.
find_deb() {
    ls "$deb_dir"/"$1"_*.deb 2>/dev/null | head -n 1 || true
}

download() {
    package=$1
    if [ -n "$(find_deb "$package")" ]; then
        return 0
    fi
    log "downloading $package"
    if ! (cd "$deb_dir" && apt-get download "$package" >/dev/null 2>&1); then
        log "apt-get download $package failed; running apt-get update once"
        apt-get update >/dev/null 2>&1 || die "apt-get update failed"
        (cd "$deb_dir" && apt-get download "$package" >&2) || die "apt-get download $package failed"
    fi
}

kernel_package_of_meta() {
    apt-cache depends "$kernel_meta_package" 2>/dev/null \
        | sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n 1
}

kernel_package=$(ls "$deb_dir"/linux-image-*-cloud-amd64_*.deb 2>/dev/null | head -n 1 || true)
if [ -z "$kernel_package" ]; then
    name=$(kernel_package_of_meta)
    if [ -z "$name" ]; then
        apt-get update >/dev/null 2>&1 || die "apt-get update failed"
        name=$(kernel_package_of_meta)
    fi
    [ -n "$name" ] || die "cannot resolve $kernel_meta_package to a kernel package"
    download "$name"
    kernel_package=$(find_deb "$name")
fi
download "$busybox_package"
busybox_deb=$(find_deb "$busybox_package")
[ -n "$busybox_deb" ] || die "no $busybox_package package in $deb_dir"

work_dir=$(mktemp -d "$output_dir/work.XXXXXX")
trap 'rm -rf "$work_dir"' EXIT
log "unpacking $(basename "$kernel_package") and $(basename "$busybox_deb")"
dpkg-deb -x "$kernel_package" "$work_dir/kernel"
dpkg-deb -x "$busybox_deb" "$work_dir/busybox"

kernel_version=$(ls "$work_dir/kernel/lib/modules" | head -n 1)
[ -n "$kernel_version" ] || die "no modules in $kernel_package"
module_root="$work_dir/kernel/lib/modules/$kernel_version"

root="$work_dir/root"
mkdir -p "$root/bin" "$root/dev" "$root/proc" "$root/sys" "$root/run" "$root/tmp" \
    "$root/lib/modules"
cp "$work_dir/busybox/bin/busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp -R "$guest_source_dir/rootfs/." "$root/"
chmod 0755 "$root/init" "$root/lib/hafen/"* "$root/www/cgi-bin/"* "$root/etc/acpi/PWRF/00000080"

# Resolves module dependencies at build time (the kernel package ships no modules.dep and
# busybox modprobe needs one), so /init only insmods a list in dependency order.
module_path() {
    local pattern
    pattern=$(echo "$1" | sed 's/[-_]/[-_]/g')
    find "$module_root/kernel" -regex ".*/$pattern\.ko\(\.xz\|\.zst\|\.gz\)?" | head -n 1 || true
}
module_order=""
add_module() {
    local name path depends dependency
    name=$(echo "$1" | tr '-' '_')
    case " $module_order " in *" $name "*) return 0 ;; esac
    if grep -q "/$name\.ko" "$module_root/modules.builtin" 2>/dev/null; then
        return 0
    fi
    path=$(module_path "$name")
    [ -n "$path" ] || die "module $name is neither built in nor shipped by $kernel_version"
    depends=$(strings_of "$path" | sed -n 's/^depends=//p' | tr ',' ' ')
    for dependency in $depends; do
        add_module "$dependency"
    done
    case " $module_order " in *" $name "*) return 0 ;; esac
    module_order="$module_order $name"
    case "$path" in
        *.xz) xz -dc "$path" > "$root/lib/modules/$name.ko" ;;
        *.zst) zstd -dc "$path" > "$root/lib/modules/$name.ko" ;;
        *.gz) gzip -dc "$path" > "$root/lib/modules/$name.ko" ;;
        *) cp "$path" "$root/lib/modules/$name.ko" ;;
    esac
}
strings_of() {
    case "$1" in
        *.xz) xz -dc "$1" | "$work_dir/busybox/bin/busybox" strings ;;
        *.zst) zstd -dc "$1" | "$work_dir/busybox/bin/busybox" strings ;;
        *.gz) gzip -dc "$1" | "$work_dir/busybox/bin/busybox" strings ;;
        *) "$work_dir/busybox/bin/busybox" strings "$1" ;;
    esac
}
for module in $wanted_modules; do
    add_module "$module"
done
echo "$module_order" | tr ' ' '\n' | sed '/^$/d' > "$root/lib/modules/order"
log "kernel $kernel_version, modules:$module_order"

(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -6 > "$work_dir/initrd.img"
cp "$work_dir/kernel/boot/vmlinuz-$kernel_version" "$work_dir/vmlinuz"
mv "$work_dir/initrd.img" "$output_dir/initrd.img"
mv "$work_dir/vmlinuz" "$output_dir/vmlinuz"
echo "$stamp" > "$output_dir/stamp"
log "built $output_dir"
print_result
