#!/bin/sh
# GET / : the guest's state as JSON; every request increments the counter.
. /lib/hafen/disk.sh
lock || { printf 'Status: 503\r\nContent-Type: text/plain\r\n\r\nbusy\n'; exit 0; }
counter=$(( $(cat /run/hafen/counter) + 1 ))
echo "$counter" > /run/hafen/counter
unlock
boot_id=$(cat /run/hafen/boot_id)
uuid=$(cat /sys/class/dmi/id/product_uuid 2>/dev/null || true)
uptime_s=$(cut -d' ' -f1 /proc/uptime)
printf 'Content-Type: application/json\r\nCache-Control: no-store\r\n\r\n'
printf '{"boot_id":"%s","counter":%s,"uuid":"%s","uptime_s":%s}\n' "$boot_id" "$counter" "$uuid" "$uptime_s"
