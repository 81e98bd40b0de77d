# Shell helpers of the hafen test guest: a text log of records kept on the raw virtio disk
# (/dev/vda). The first 64 KiB hold a magic line and one record per line, NUL padded, so
# no filesystem module is needed and the records survive stop and start.
disk_device=/dev/vda
disk_magic=hafen-data-v1
disk_bytes=65536

# Serializes writers: busybox httpd forks one CGI process per request.
lock() {
    tries=0
    until mkdir /run/hafen/lock 2>/dev/null; do
        tries=$((tries + 1))
        [ "$tries" -gt 2000 ] && return 1
        usleep 1000
    done
}
unlock() { rmdir /run/hafen/lock; }

disk_records() {
    dd if="$disk_device" bs=4096 count=16 2>/dev/null | tr -d '\000' > /run/hafen/disk.txt
    if [ "$(head -n 1 /run/hafen/disk.txt)" = "$disk_magic" ]; then
        tail -n +2 /run/hafen/disk.txt
    fi
}

disk_append() {
    lock || return 1
    { disk_records; echo "$1"; } > /run/hafen/records.txt
    size=$(( $(wc -c < /run/hafen/records.txt) + ${#disk_magic} + 1 ))
    if [ "$size" -gt "$disk_bytes" ]; then
        unlock
        return 1
    fi
    dd if=/dev/zero of=/run/hafen/disk.img bs=4096 count=16 2>/dev/null
    { echo "$disk_magic"; cat /run/hafen/records.txt; } | dd of=/run/hafen/disk.img conv=notrunc 2>/dev/null
    dd if=/run/hafen/disk.img of="$disk_device" bs=4096 conv=fsync 2>/dev/null
    result=$?
    unlock
    return $result
}
