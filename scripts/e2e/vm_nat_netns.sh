#!/bin/sh
# Runs inside `unshare -nm` (a private network and mount namespace): the
# daemon with --nat bridge builds cbnat0 + DHCP, a nat VM gets a tap on it.
# Prints facts as KEY=VALUE lines for test_vm.py; cleans up what it started.
set -u
B=$1 DIR=$2 GUEST=$3 HASH=$4
mount -t sysfs sysfs /sys
ip link set lo up
S=$DIR/s
cp "$GUEST/vmlinuz" "$GUEST/initrd.img" "$DIR/"
sh "$(dirname "$0")/make-net-guest.sh" "$DIR" >&2
cat > "$DIR/c.yaml" <<Y
version: 1
panel: {listen: "127.0.0.1:18555", tls: "off", users: [{name: admin, password_hash: "$HASH"}]}
images: [{name: k, file: vmlinuz}, {name: i, file: initrd.img}, {name: ni, file: initrd-net.img}]
vms:
  - {name: n1, memory: 128, kernel: k, initrd: i, network: nat, autostart: true}
  - {name: g1, memory: 160, kernel: k, initrd: ni, network: nat, append: "console=ttyS0 quiet netguest.server=198.51.100.1:8080"}
  - {name: f1, memory: 128, kernel: k, initrd: i, network: nat, forwards: [{host: 18080, guest: 8080}]}
Y
"$B" daemon --config "$DIR/c.yaml" --state-dir "$S" > "$DIR/daemon.log" 2>&1 &
D=$!
i=0
while [ $i -lt 100 ] && ! grep -q "ready:" "$DIR/daemon.log"; do sleep 0.2; i=$((i+1)); done
# default --nat auto without cbnat0: user networking, said so
echo "AUTO_STATUS=$(CLOUDBIOS_PASSWORD=pw "$B" vm list --url http://127.0.0.1:18555 --user admin --json | tr -d '\n ')"
CLOUDBIOS_PASSWORD=pw "$B" vm stop --url http://127.0.0.1:18555 --user admin n1 >/dev/null
kill $D; wait $D
"$B" daemon --config "$DIR/c.yaml" --state-dir "$S" --nat bridge > "$DIR/daemon2.log" 2>&1 &
D=$!
i=0
while [ $i -lt 100 ] && ! grep -q "ready:" "$DIR/daemon2.log"; do sleep 0.2; i=$((i+1)); done
TAP=$(ls /sys/class/net | grep '^cbt' | head -1)
echo "BRIDGE_ADDR=$(ip -br addr show cbnat0 | awk '{print $3}')"
echo "BRIDGE_MAC=$(cat /sys/class/net/cbnat0/address)"
echo "TAP=$TAP"
echo "TAP_MASTER=$(basename "$(readlink /sys/class/net/$TAP/master 2>/dev/null)")"
echo "DHCP_ALIVE=$(kill -0 "$(cat $S/nat/dhcp.pid 2>/dev/null)" 2>/dev/null && echo yes || echo no)"
echo "BRIDGE_STATUS=$(CLOUDBIOS_PASSWORD=pw "$B" vm list --url http://127.0.0.1:18555 --user admin --json | tr -d '\n ')"

# masquerading: a "guest" namespace on cbnat0 (a veth standing in for a tap)
# reaches an "outside" namespace behind the uplink, which has no route back
# to 10.213.0.0/24, so only a masqueraded connection gets an answer
unshare -n sleep 180 & OUT=$!
unshare -n sleep 180 & GST=$!
sleep 0.3
ip link add up0 type veth peer name out0 netns "$OUT"
ip addr add 198.51.100.2/24 dev up0
ip link set up0 up
nsenter -t "$OUT" -n sh -c 'ip link set lo up; ip addr add 198.51.100.1/24 dev out0; ip link set out0 up'
ip link add gv0 type veth peer name eth0 netns "$GST"
ip link set gv0 master cbnat0
ip link set gv0 up
nsenter -t "$GST" -n sh -c 'ip link set lo up; ip addr add 10.213.0.50/24 dev eth0; ip link set eth0 up; ip route add default via 10.213.0.1'
# the outside answers with the source address it sees
nsenter -t "$OUT" -n timeout 170 python3 -c '
import http.server as h
class H(h.BaseHTTPRequestHandler):
    def do_GET(s):
        b = s.client_address[0].encode(); s.send_response(200); s.end_headers(); s.wfile.write(b)
    def log_message(s, *a): pass
h.HTTPServer(("198.51.100.1", 8080), H).serve_forever()' &
WEB=$!
# fetch [ATTEMPTS]: what the outside saw as our source, or "fail" (a loaded
# machine can be slow: a positive check tries a few times)
fetch() {
    nsenter -t "$GST" -n timeout 40 python3 -c '
import sys, urllib.request
for _ in range(int(sys.argv[1])):
    try:
        print(urllib.request.urlopen("http://198.51.100.1:8080/", timeout=5).read().decode()); break
    except Exception: pass
else: print("fail")' "${1:-3}" 2>/dev/null || echo fail
}
i=0
while [ $i -lt 30 ] && ! nsenter -t "$OUT" -n sh -c 'ss -ltn 2>/dev/null | grep -q :8080'; do sleep 0.1; i=$((i+1)); done
echo "IP_FORWARD=$(cat /proc/sys/net/ipv4/ip_forward)"
echo "NAT_SEEN_SOURCE=$(fetch)"
echo "NFT_MASQ_RULES=$(nft list table ip cloudbios 2>/dev/null | grep -c 'oifname != "cbnat0" masquerade')"
# a real guest (TCG) on its tap: a DHCP lease from the daemon's server, then
# the outside through the masquerade
CLOUDBIOS_PASSWORD=pw "$B" vm start --url http://127.0.0.1:18555 --user admin g1 >/dev/null
i=0
while [ $i -lt 300 ] && ! grep -q "NET-RESULT" "$S/run/g1/serial.log" 2>/dev/null; do sleep 0.3; i=$((i+1)); done
echo "GUEST_LEASE=$(grep -o 'NET-LEASE.*' "$S/run/g1/serial.log" | head -1 | tr -d '\r')"
echo "GUEST_SEEN_SOURCE=$(grep -o 'NET-RESULT.*' "$S/run/g1/serial.log" | head -1 | tr -d '\r' | sed 's/^NET-RESULT //')"
CLOUDBIOS_PASSWORD=pw "$B" vm stop --url http://127.0.0.1:18555 --user admin g1 >/dev/null
nft delete table ip cloudbios
echo "NO_MASQ_SEEN_SOURCE=$(fetch 1)"
CLOUDBIOS_PASSWORD=pw "$B" vm stop --url http://127.0.0.1:18555 --user admin n1 >/dev/null
sleep 0.5
echo "TAP_AFTER_STOP=$(ls /sys/class/net | grep -c '^cbt')"
kill $D; wait $D
# with no guest left, the daemon takes its NAT along when it exits
echo "EXIT_BRIDGE=$(test -e /sys/class/net/cbnat0 && echo kept || echo gone)"
echo "EXIT_NFT=$(nft list table ip cloudbios >/dev/null 2>&1 && echo kept || echo gone)"
echo "EXIT_DHCP=$(kill -0 "$(cat $S/nat/dhcp.pid 2>/dev/null)" 2>/dev/null && echo kept || echo gone)"
# a restart puts the table back exactly once, however often it runs (the
# last one keeps running for the checks below)
for n in 3 4; do
    "$B" daemon --config "$DIR/c.yaml" --state-dir "$S" --nat bridge --no-autostart > "$DIR/daemon$n.log" 2>&1 &
    D=$!
    i=0
    while [ $i -lt 100 ] && ! grep -q "ready:" "$DIR/daemon$n.log"; do sleep 0.2; i=$((i+1)); done
    i=0
    while [ $i -lt 50 ] && ! nft list ruleset 2>/dev/null | grep -q 'dport 18080 dnat'; do sleep 0.2; i=$((i+1)); done
    [ $n = 3 ] && { kill $D; wait $D; }
done
# the stand-in guest's veth goes back on the new bridge
ip link set gv0 master cbnat0
echo "RESTART_MASQ_RULES=$(nft list ruleset 2>/dev/null | grep -c 'oifname != "cbnat0" masquerade')"
echo "RESTART_DNAT_RULES=$(nft list ruleset 2>/dev/null | grep -c 'dport 18080 dnat')"
echo "RESTART_SEEN_SOURCE=$(fetch)"
echo "RESTART_BRIDGE_MAC=$(cat /sys/class/net/cbnat0/address)"

# forwards: f1 has a fixed address in the DHCP server's hosts file; port
# 18080 of every host address reaches port 8080 there (a stand-in for the
# guest on cbnat0 listens), from outside and from the host itself
FADDR=$(awk '$1=="f1"{print $2}' "$S/nat/addresses" 2>/dev/null)
echo "FWD_ADDR=$FADDR"
echo "FWD_DHCP_HOST=$(grep -c ",$FADDR,f1" "$S/nat/dhcp-hosts" 2>/dev/null)"
unshare -n sleep 120 & FG=$!
sleep 0.3
ip link add fv0 type veth peer name eth0 netns "$FG"
ip link set fv0 master cbnat0
ip link set fv0 up
nsenter -t "$FG" -n sh -c "ip link set lo up; ip addr add $FADDR/24 dev eth0; ip link set eth0 up; ip route add default via 10.213.0.1"
nsenter -t "$FG" -n timeout 100 python3 -c '
import http.server as h
class H(h.BaseHTTPRequestHandler):
    def do_GET(s):
        s.send_response(200); s.end_headers(); s.wfile.write(b"guest-f1")
    def log_message(s, *a): pass
h.HTTPServer(("0.0.0.0", 8080), H).serve_forever()' &
FWEB=$!
i=0
while [ $i -lt 30 ] && ! nsenter -t "$FG" -n sh -c 'ss -ltn 2>/dev/null | grep -q :8080'; do sleep 0.1; i=$((i+1)); done
get() { timeout 20 python3 -c '
import sys, urllib.request
try: print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())
except Exception as e: print("fail")' "$1" 2>/dev/null || echo fail; }
echo "FWD_FROM_OUTSIDE=$(nsenter -t "$OUT" -n timeout 20 python3 -c '
import urllib.request
try: print(urllib.request.urlopen("http://198.51.100.2:18080/", timeout=5).read().decode())
except Exception: print("fail")')"
echo "FWD_FROM_HOST=$(get http://127.0.0.1:18080/)"
kill $FWEB $FG 2>/dev/null
kill $D; wait $D
kill $WEB $OUT $GST 2>/dev/null
[ -f "$S/nat/dhcp.pid" ] && kill "$(cat "$S/nat/dhcp.pid")"
exit 0
