#!/bin/sh
# Runs inside `unshare -nm` (a private network and mount namespace): a veth
# "eth0" with 192.0.2.10/24 and the default route stands in for the physical
# NIC; its peer lives in a "lan" namespace (192.0.2.1, the gateway). A VM with
# network: bridge makes the daemon build vmbr0 over eth0. Prints facts as
# KEY=VALUE lines for test_vm.py; cleans up what it started.
set -u
B=$1 DIR=$2 GUEST=$3 HASH=$4 PORT_KEY=${5:-}
mount -t sysfs sysfs /sys
ip link set lo up
S=$DIR/s
cp "$GUEST/vmlinuz" "$GUEST/initrd.img" "$DIR/"
unshare -n sleep 100 & LAN=$!
sleep 0.3
ip link add eth0 type veth peer name lan0 netns "$LAN"
ip addr add 192.0.2.10/24 dev eth0
ip link set eth0 up
ip route add default via 192.0.2.1
ip route add 203.0.113.0/24 via 192.0.2.254
nsenter -t "$LAN" -n sh -c 'ip link set lo up; ip addr add 192.0.2.1/24 dev lan0; ip link set lan0 up'
echo "MAC_BEFORE=$(cat /sys/class/net/eth0/address)"
NET=""
[ -n "$PORT_KEY" ] && NET="network: {bridge_port: $PORT_KEY}"
cat > "$DIR/c.yaml" <<Y
version: 1
panel: {listen: "0.0.0.0:18556", tls: "off", users: [{name: admin, password_hash: "$HASH"}]}
$NET
images: [{name: k, file: vmlinuz}, {name: i, file: initrd.img}]
vms: [{name: b1, memory: 128, kernel: k, initrd: i, network: bridge, autostart: true}]
Y
"$B" daemon --config "$DIR/c.yaml" --state-dir "$S" > "$DIR/daemon.log" 2>&1 &
D=$!
i=0
while [ $i -lt 150 ] && ! grep -q "ready:" "$DIR/daemon.log"; do sleep 0.2; i=$((i+1)); done
TAP=$(ls /sys/class/net | grep '^cbt' | head -1)
echo "STATUS=$(CLOUDBIOS_PASSWORD=pw "$B" vm list --url http://127.0.0.1:18556 --user admin --json | tr -d '\n ')"
echo "TAP=$TAP"
echo "TAP_MASTER=$(basename "$(readlink /sys/class/net/$TAP/master 2>/dev/null)")"
echo "NIC_MASTER=$(basename "$(readlink /sys/class/net/eth0/master 2>/dev/null)")"
echo "BRIDGE_ADDR=$(ip -4 -br addr show vmbr0 | awk '{print $3}')"
echo "BRIDGE_MAC=$(cat /sys/class/net/vmbr0/address)"
echo "NIC_ADDR=$(ip -4 -br addr show eth0 | awk '{print $3}')"
echo "DEFAULT_ROUTE=$(ip -4 route show default | tr -s ' ' | sed 's/ $//')"
echo "STATIC_ROUTE=$(ip -4 route show 203.0.113.0/24 | tr -s ' ' | sed 's/ $//')"
# the host is still reachable at its address from the LAN, through the bridge
echo "LAN_HEALTH=$(nsenter -t "$LAN" -n timeout 10 python3 -c '
import urllib.request
try: print(urllib.request.urlopen("http://192.0.2.10:18556/api/v1/health", timeout=5).status)
except Exception as e: print("fail")' 2>/dev/null || echo fail)"
# and it reaches its gateway
echo "GATEWAY=$(timeout 10 busybox ping -c1 -W2 192.0.2.1 >/dev/null 2>&1 && echo ok || echo fail)"
CLOUDBIOS_PASSWORD=pw "$B" vm stop --url http://127.0.0.1:18556 --user admin b1 >/dev/null
sleep 0.5
echo "TAP_AFTER_STOP=$(ls /sys/class/net | grep -c '^cbt')"
# a restarted daemon and a second start leave the bridge as it is
kill $D; wait $D
"$B" daemon --config "$DIR/c.yaml" --state-dir "$S" > "$DIR/daemon2.log" 2>&1 &
D=$!
i=0
while [ $i -lt 150 ] && ! grep -q "ready:" "$DIR/daemon2.log"; do sleep 0.2; i=$((i+1)); done
echo "RESTART_BRIDGE_ADDR=$(ip -4 -br addr show vmbr0 | awk '{print $3}')"
echo "RESTART_TAP_MASTER=$(basename "$(readlink /sys/class/net/$(ls /sys/class/net | grep '^cbt' | head -1)/master 2>/dev/null)")"
CLOUDBIOS_PASSWORD=pw "$B" vm stop --url http://127.0.0.1:18556 --user admin b1 >/dev/null
kill $D; wait $D
kill $LAN 2>/dev/null
exit 0
