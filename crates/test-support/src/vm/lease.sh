# The guest-side helpers and the lease DHCP gave, the first checks of
# every guest script (vm/checks.sh and the reference VMM's). Each check
# reports `SLIPWAY-RESULT KEY=VALUE`; the host judges them.

GATEWAY=10.0.2.2
result() { echo "SLIPWAY-RESULT $1=$2"; }
now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
show_on_failure() { [ "$1" = 0 ] || cat "$2"; }

# The lease DHCP gave.
result address "$(ip -4 addr show dev eth0 | awk '/inet / { print $2; exit }')"
result router "$(ip route | awk '/^default/ { print $3; exit }')"
result nameserver "$(awk '/^nameserver/ { print $2; exit }' /etc/resolv.conf)"
result mtu "$(cat /sys/class/net/eth0/mtu)"
