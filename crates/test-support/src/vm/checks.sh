# The checks of the VM suite, run by the guest's /init (busybox sh) once
# eth0 is up, after vm/lease.sh. The host prepends the variables:
# DOWNLOAD_PORT, UPLOAD_PORT, IPERF_UP_PORT, IPERF_DOWN_PORT, EOF_PORT (its
# servers on 127.0.0.1, reached through the gateway), HALF_LEN,
# IPERF_SECONDS, CHECK_DNS, CHECK_IPV6, DOWNLOAD6_PORT (the download
# server on ::1, reached through the IPv6 gateway) and IDLE_SECONDS.

# An inbound forward to a server in the guest; the host sends, shuts down
# its side, and reads the hash the guest answers after end of stream.
nc -l -p 8080 -e sha256sum &
server=$!
tries=0
while ! grep -q ':1F90 00000000:0000 0A' /proc/net/tcp && [ "$tries" -lt 100 ]; do
    tries=$((tries + 1))
    sleep 0.1
done
echo "SLIPWAY-READY inbound"
wait "$server"
result inbound_status $?

# ICMP echo to the gateway.
ping -c 3 -W 5 "$GATEWAY" > /tmp/ping 2>&1
result ping_received "$(sed -n 's/.*, \([0-9]*\) packets received.*/\1/p' /tmp/ping)"

# A name the host's responder knows, through the DNS address.
if [ "$CHECK_DNS" = 1 ]; then
    nslookup slipway.test > /tmp/dns 2>&1
    result dns_answer "$(awk '/^Name:/ { named = 1 } named && /^Address/ { print $NF; exit }' /tmp/dns)"
fi

# HTTP download and upload of the bulk data, checked by hash at both ends.
start=$(now)
curl -sS --max-time 100 -o /tmp/bulk "http://$GATEWAY:$DOWNLOAD_PORT/bulk" 2> /tmp/curl
status=$?
result download_seconds "$(since "$start")"
show_on_failure $status /tmp/curl
result download_sha256 "$(sha256sum /tmp/bulk | cut -d' ' -f1)"
start=$(now)
reply=$(curl -sS --max-time 100 -H 'Expect:' -T /tmp/bulk "http://$GATEWAY:$UPLOAD_PORT/upload" 2> /tmp/curl)
status=$?
result upload_seconds "$(since "$start")"
show_on_failure $status /tmp/curl
result upload_reply "$reply"

# The guest shuts down its side and still reads the host's answer.
head -c "$HALF_LEN" /tmp/bulk > /tmp/half
result halfclose_reply "$(nc "$GATEWAY" "$EOF_PORT" < /tmp/half)"
rm -f /tmp/bulk

# iperf3 each way against the host's servers; the client's JSON report
# (which holds the receiver's count either way) goes between markers.
iperf() {
    iperf3 -c "$GATEWAY" -p "$2" -t "$IPERF_SECONDS" -J $3 > /tmp/iperf 2>&1
    result "iperf_$1_status" $?
    echo "SLIPWAY-BEGIN iperf_$1"
    cat /tmp/iperf
    echo "SLIPWAY-END iperf_$1"
}
iperf up "$IPERF_UP_PORT"
iperf down "$IPERF_DOWN_PORT" -R

# IPv6: the address and default route the kernel made from the router's
# advertisements (SLAAC), the address dhcpcd leases by DHCPv6 (IA_NA,
# leaving the advertisements to the kernel), and the download once more
# over IPv6, checked by hash.
if [ "$CHECK_IPV6" = 1 ]; then
    ipv6_start=$(now)
    tries=0
    while ! ip -6 route show default | grep -q via && [ "$tries" -lt 50 ]; do
        tries=$((tries + 1))
        sleep 0.1
    done
    global6() { ip -6 addr show dev eth0 | awk -v len="$1" '/inet6 .* scope global/ && $2 ~ "/" len "$" { print $2; exit }'; }
    result ipv6_slaac "$(global6 64)"
    result ipv6_router "$(ip -6 route show default | awk '{ print $3; exit }')"
    # DHCPv6 for an address only (--ia_na), advertisements left to the
    # kernel (--noipv6rs), rapid commit as Debian's dhcpcd.conf asks; it
    # exits once the lease is applied (-1 -w) and runs no hooks (-c).
    dhcpcd -f /dev/null -o rapid_commit -6 -1 -w -B --noipv6rs --ia_na -c /bin/true -t 10 eth0 > /tmp/dhcpcd 2>&1
    show_on_failure $? /tmp/dhcpcd
    result ipv6_dhcp "$(global6 128)"
    start=$(now)
    curl -6 -sS --max-time 100 -o /tmp/bulk "http://[fd00:0:0:2::2]:$DOWNLOAD6_PORT/bulk" 2> /tmp/curl
    status=$?
    result download6_seconds "$(since "$start")"
    show_on_failure $status /tmp/curl
    result download6_sha256 "$(sha256sum /tmp/bulk | cut -d' ' -f1)"
    rm -f /tmp/bulk
    result ipv6_seconds "$(since "$ipv6_start")"
fi

# The traffic is over: the guest holds still while the host checks that
# slipway's loop has gone quiet.
if [ "$IDLE_SECONDS" -gt 0 ]; then
    echo "SLIPWAY-IDLE"
    sleep "$IDLE_SECONDS"
fi
exit 0
