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
cat > "$DIR/c.yaml" <<Y
version: 1
panel: {listen: "127.0.0.1:18555", tls: "off", users: [{name: admin, password_hash: "$HASH"}]}
images: [{name: k, file: vmlinuz}, {name: i, file: initrd.img}]
vms: [{name: n1, memory: 128, kernel: k, initrd: i, network: nat, autostart: true}]
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
echo "TAP=$TAP"
echo "TAP_MASTER=$(basename "$(readlink /sys/class/net/$TAP/master 2>/dev/null)")"
echo "DHCP_ALIVE=$(kill -0 "$(cat $S/nat/dhcp.pid 2>/dev/null)" 2>/dev/null && echo yes || echo no)"
echo "BRIDGE_STATUS=$(CLOUDBIOS_PASSWORD=pw "$B" vm list --url http://127.0.0.1:18555 --user admin --json | tr -d '\n ')"
CLOUDBIOS_PASSWORD=pw "$B" vm stop --url http://127.0.0.1:18555 --user admin n1 >/dev/null
sleep 0.5
echo "TAP_AFTER_STOP=$(ls /sys/class/net | grep -c '^cbt')"
kill $D; wait $D
[ -f "$S/nat/dhcp.pid" ] && kill "$(cat "$S/nat/dhcp.pid")"
exit 0
