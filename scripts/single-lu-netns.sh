#!/usr/bin/env bash
# Issue 20 prototype: IP-layer routing of a pool's sessions to its owner
# (docs/single-lu.md, "The prototype"). Needs root and `ip netns`; touches
# only the namespaces it creates (dxslu-<pid>-*), removed on exit.
#
#   H (host) ─┐                         ┌─ A fe0 10.50.0.11  (owner of pool P)
#             ├── br-fe (namespace sw) ─┤
#             │                         └─ B fe0 10.50.0.12  (partner)
#   H fe0 10.50.0.20          A ic0 10.51.0.1 ──veth── B ic0 10.51.0.2
#
# Pool P has one portal address per physical port: 10.50.0.111 "P on A's
# port", 10.50.0.112 "P on B's port". The owner terminates both; the other
# controller answers ARP for its port's address and routes it to the owner
# over the interconnect. No NAT anywhere.
#
# Usage: sudo scripts/single-lu-netns.sh [ROUNDS] (default 2000 round trips
# of 4 KiB per latency run). Exit status 0 only when every check passes.
set -uo pipefail

rounds=${1:-2000}
size=4096
port=3260
pfx="dxslu-$$"
NH="$pfx-h" NA="$pfx-a" NB="$pfx-b" NSW="$pfx-sw"
P_A=10.50.0.111 # pool P on A's physical port
P_B=10.50.0.112 # pool P on B's physical port
H_IP=10.50.0.20
A_FE=10.50.0.11 B_FE=10.50.0.12 A_IC=10.51.0.1 B_IC=10.51.0.2
RT=200 # routing table for "replies of a pool address the other controller carries"

work=$(mktemp -d /tmp/dxslu.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	for n in "$NH" "$NA" "$NB" "$NSW"; do ip netns del "$n" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "setup failed: $*" >&2; exit 2; }
run() { "$@" || die "$*"; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
py() { local ns=$1; shift; ip netns exec "$ns" python3 "$work/slu.py" "$@"; }
sc() { run ip netns exec "$1" sysctl -q -w "$2"; }

names=() verdicts=() notes=()
check() { # check ID OK(0/1) NOTE
	names+=("$1"); notes+=("$3")
	if [ "$2" = 0 ]; then verdicts+=(PASS); else verdicts+=(FAIL); fi
	printf '  [%s] %s: %s\n' "${verdicts[-1]}" "$1" "$3"
}
say() { printf '\n== %s\n' "$*"; }
mac() { in_ns "$1" cat "/sys/class/net/$2/address"; }
fwd() { in_ns "$1" awk '/^Ip:/ { if (h) print $7; h = 1 }' /proc/net/snmp; } # ForwDatagrams
neigh_mac() { in_ns "$NH" ip neigh show "$1" dev fe0 | awk '{ for (i = 1; i < NF; i++) if ($i == "lladdr") print $(i+1) }'; }

cat >"$work/slu.py" <<'PY'
import json, os, select, signal, socket, struct, sys, threading, time

def serve(node, port):
    conns = []
    def abort_all(*_):
        for c in list(conns):
            try:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()
            except OSError:
                pass
        conns.clear()
    signal.signal(signal.SIGUSR1, abort_all)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", int(port)))
    ls.listen(64)
    def handle(c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        l, p = c.getsockname()[0], c.getpeername()[0]
        try:
            c.sendall(f"node={node} local={l} peer={p}\n".encode())
            while True:
                b = c.recv(65536)
                if not b:
                    break
                c.sendall(b)
        except OSError:
            pass
        finally:
            try: c.close()
            except OSError: pass
    while True:
        c, _ = ls.accept()
        conns.append(c)
        threading.Thread(target=handle, args=(c,), daemon=True).start()

def connect(addr, port, timeout):
    s = socket.create_connection((addr, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = b""
    while not f.endswith(b"\n"):
        b = s.recv(256)
        if not b:
            raise OSError("closed before greeting")
        f += b
    return s, f.decode().strip()

def who(addr, port, timeout="3"):
    try:
        s, g = connect(addr, int(port), float(timeout))
        print(g); s.close()
    except OSError as e:
        print(f"error={e}"); sys.exit(1)

def hold(addr, port):
    try:
        s, g = connect(addr, int(port), 3)
    except OSError as e:
        print(f"error={e}", flush=True); sys.exit(1)
    print(g, flush=True)
    s.settimeout(10)
    try:
        b = s.recv(1)
        print("closed=eof" if not b else "closed=data", flush=True)
    except ConnectionResetError:
        print("closed=reset", flush=True)
    except socket.timeout:
        print("closed=timeout", flush=True)

def echo(addr, port, n, size):
    n, size = int(n), int(size)
    s, g = connect(addr, int(port), 3)
    s.settimeout(5)
    msg = os.urandom(size)
    lat = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        s.sendall(msg)
        got = 0
        while got < size:
            b = s.recv(size - got)
            if not b:
                raise OSError("closed")
            got += len(b)
        lat.append(time.perf_counter_ns() - t0)
    s.close()
    lat.sort()
    us = lambda v: round(v / 1000, 1)
    print(json.dumps({"greeting": g, "n": n, "median_us": us(lat[n // 2]),
                      "p99_us": us(lat[min(n - 1, (n * 99) // 100)]),
                      "mean_us": us(sum(lat) / n), "min_us": us(lat[0])}))

def macb(m): return bytes(int(x, 16) for x in m.split(":"))
def ipb(a): return socket.inet_aton(a)
def ifmac(ifc): return open(f"/sys/class/net/{ifc}/address").read().strip()

def arp_frame(op, sha, sip, tha, tip, dst):
    eth = macb(dst) + macb(sha) + b"\x08\x06"
    return eth + struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + macb(sha) + ipb(sip) + macb(tha) + ipb(tip)

def arpprobe(ifc, tip, sip, wait):
    """Broadcast one ARP request for tip; print each MAC that answers."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    s.bind((ifc, 0))
    me = ifmac(ifc)
    s.send(arp_frame(1, me, sip, "00:00:00:00:00:00", tip, "ff:ff:ff:ff:ff:ff"))
    end = time.time() + float(wait)
    seen = []
    while True:
        left = end - time.time()
        if left <= 0 or not select.select([s], [], [], left)[0]:
            break
        f = s.recv(128)
        op = struct.unpack("!H", f[20:22])[0]
        spa = socket.inet_ntoa(f[28:32])
        if op == 2 and spa == tip:
            m = ":".join(f"{x:02x}" for x in f[22:28])
            if m not in seen:
                seen.append(m)
    print(" ".join(seen))

def garp(ifc, ip, count):
    """Gratuitous ARP (request form, sender = target = ip), as arping -U."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    s.bind((ifc, 0))
    me = ifmac(ifc)
    for i in range(int(count)):
        s.send(arp_frame(1, me, ip, "00:00:00:00:00:00", ip, "ff:ff:ff:ff:ff:ff"))
        time.sleep(0.05)

def csum(b):
    if len(b) % 2: b += b"\0"
    t = sum(struct.unpack(f"!{len(b)//2}H", b))
    while t >> 16: t = (t & 0xffff) + (t >> 16)
    return (~t) & 0xffff

def inject(ifc, dmac, sip, dip):
    """One ICMP echo request to dip, put on the wire of ifc for dmac."""
    icmp = struct.pack("!BBHHH", 8, 0, 0, 0x4242, 1) + b"dxslu-loop-probe"
    icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 7, 0, 64, 1, 0, ipb(sip), ipb(dip))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((ifc, 0))
    s.send(macb(dmac) + macb(ifmac(ifc)) + b"\x08\x00" + ip + icmp)

cmds = {"serve": serve, "who": who, "hold": hold, "echo": echo,
        "arpprobe": arpprobe, "garp": garp, "inject": inject}
cmds[sys.argv[1]](*sys.argv[2:])
PY

# ---------------------------------------------------------------- topology
say "namespaces $NH $NA $NB $NSW"
for n in "$NH" "$NA" "$NB" "$NSW"; do run ip netns add "$n"; done
run ip -n "$NSW" link add br-fe type bridge
for side in h a b; do
	ns_var="N${side^^}"
	run ip link add fe0 netns "${!ns_var}" type veth peer name "sw-$side" netns "$NSW"
	run ip -n "$NSW" link set "sw-$side" master br-fe up
done
run ip -n "$NSW" link set br-fe up
run ip link add ic0 netns "$NA" type veth peer name ic0 netns "$NB"
for n in "$NH" "$NA" "$NB"; do
	run ip -n "$n" link set lo up
	# Explicit defaults: a new namespace inherits some of the init
	# namespace's IPv4 settings (net.core.devconf_inherit_init_net).
	for c in all default; do sc "$n" "net.ipv4.conf.$c.rp_filter=0"; done
done
run ip -n "$NH" addr add "$H_IP/24" dev fe0
run ip -n "$NA" addr add "$A_FE/24" dev fe0
run ip -n "$NB" addr add "$B_FE/24" dev fe0
run ip -n "$NA" addr add "$A_IC/24" dev ic0
run ip -n "$NB" addr add "$B_IC/24" dev ic0
for n in "$NH" "$NA" "$NB"; do run ip -n "$n" link set fe0 up; done
for n in "$NA" "$NB"; do
	run ip -n "$n" link set ic0 up
	sc "$n" net.ipv4.ip_forward=1
	# The front end never announces or answers for an address that is
	# not on it (the pool address carried for the partner's port).
	sc "$n" net.ipv4.conf.fe0.arp_ignore=1
	sc "$n" net.ipv4.conf.fe0.arp_announce=2
	# Answer a proxied ARP at once (default: a random delay up to 0.8 s).
	sc "$n" net.ipv4.neigh.fe0.proxy_delay=0
	# Pool traffic arrives on the interconnect with host sources.
	sc "$n" net.ipv4.conf.ic0.rp_filter=2
	# Same-interface forwarding is a loop, never a redirect.
	sc "$n" net.ipv4.conf.all.send_redirects=0
	sc "$n" net.ipv4.conf.ic0.send_redirects=0
	# Pool addresses on the interconnect side go out through the partner.
	run ip -n "$n" route add default via "$([ "$n" = "$NA" ] && echo "$B_IC" || echo "$A_IC")" dev ic0 table "$RT"
done
A_FE_MAC=$(mac "$NA" fe0) B_FE_MAC=$(mac "$NB" fe0) B_IC_MAC=$(mac "$NB" ic0)
echo "A fe0 $A_FE_MAC, B fe0 $B_FE_MAC, B ic0 $B_IC_MAC"

# Pool address roles on one controller. The address of the controller's
# own port lives on its front-end interface; the address of the partner's
# port is carried on a local-only interface (lo here: this kernel has no
# dummy driver; the appliance would use a dummy link).
terminate() { # NS OWN_PORT_ADDR PARTNER_PORT_ADDR: this controller owns P
	local ns=$1 own=$2 other=$3
	run ip -n "$ns" addr add "$own/32" dev fe0
	run ip -n "$ns" addr add "$other/32" dev lo
	# Replies from the partner's port address leave through the partner.
	run ip -n "$ns" rule add pref 1000 from "$other" lookup "$RT"
}
unterminate() {
	local ns=$1 own=$2 other=$3
	ip -n "$ns" rule del pref 1000 from "$other" lookup "$RT" 2>/dev/null
	ip -n "$ns" addr del "$other/32" dev lo 2>/dev/null
	ip -n "$ns" addr del "$own/32" dev fe0 2>/dev/null
	true
}
forward() { # NS OWN_PORT_ADDR OWNER_IC: the partner owns P; route our port's address to it
	local ns=$1 own=$2 via=$3
	run ip -n "$ns" neigh add proxy "$own" dev fe0
	run ip -n "$ns" route add "$own/32" via "$via" dev ic0
	# No loop: a pool address is forwarded only when it came in on the
	# front end; from the interconnect it is dropped.
	run ip -n "$ns" rule add pref 900 iif ic0 to "$own/32" blackhole
}
unforward() {
	local ns=$1 own=$2 via=$3
	ip -n "$ns" rule del pref 900 iif ic0 to "$own/32" blackhole 2>/dev/null
	ip -n "$ns" route del "$own/32" via "$via" dev ic0 2>/dev/null
	ip -n "$ns" neigh del proxy "$own" dev fe0 2>/dev/null
	true
}

terminate "$NA" "$P_A" "$P_B"
forward "$NB" "$P_B" "$A_IC"

for n in A B; do
	ns_var="N$n"
	ip netns exec "${!ns_var}" python3 "$work/slu.py" serve "$n" "$port" &
	pids+=($!)
done
sleep 0.5

# ---------------------------------------------------------------- (a)
say "(a) H reaches P on both ports; A sees H's own address"
g1=$(py "$NH" who "$P_A" "$port") ; echo "  -> $P_A: $g1"
g2=$(py "$NH" who "$P_B" "$port") ; echo "  -> $P_B: $g2"
m1=$(neigh_mac "$P_A") m2=$(neigh_mac "$P_B")
echo "  H's neighbours: $P_A at $m1, $P_B at $m2"
[ "$g1" = "node=A local=$P_A peer=$H_IP" ]; check a1-direct $? "$P_A terminated on A, peer $H_IP"
[ "$g2" = "node=A local=$P_B peer=$H_IP" ] && [ "$m2" = "$B_FE_MAC" ]
check a2-via-partner $? "$P_B via B's MAC, terminated on A, peer $H_IP (no NAT)"

# ---------------------------------------------------------------- (b)
say "(b) who answers ARP for $P_B on the front-end"
r=$(py "$NH" arpprobe fe0 "$P_B" "$H_IP" 1)
echo "  arp_ignore=1 on A fe0: answers from [$r]"
sc "$NA" net.ipv4.conf.fe0.arp_ignore=0
r0=$(py "$NH" arpprobe fe0 "$P_B" "$H_IP" 1)
echo "  arp_ignore=0 on A fe0 (weak host model): answers from [$r0]"
hij=$(neigh_mac "$P_B")
echo "  ... and H's neighbour entry for $P_B now points at ${hij} ($([ "$hij" = "$A_FE_MAC" ] && echo "A: the late answer rebinds it" || echo "B"))"
sc "$NA" net.ipv4.conf.fe0.arp_ignore=1
run ip -n "$NH" neigh del "$P_B" dev fe0
rown=$(py "$NH" arpprobe fe0 "$P_A" "$H_IP" 1)
echo "  $P_A (on A's fe0 itself): answers from [$rown]"
[ "$r" = "$B_FE_MAC" ] && [ "$rown" = "$A_FE_MAC" ]
check b-arp $? "only B answers for $P_B with arp_ignore=1 (without: [$r0], H's entry then at $hij)"

# ---------------------------------------------------------------- (c)
say "(c) B forwards $P_B only from its front end"
f0=$(fwd "$NB"); py "$NA" inject ic0 "$B_IC_MAC" "$A_IC" "$P_B"; sleep 0.3; f1=$(fwd "$NB")
echo "  with the iif rule: B ForwDatagrams +$((f1 - f0)) for a packet to $P_B arriving on ic0"
run ip -n "$NB" rule del pref 900 iif ic0 to "$P_B/32" blackhole
f2=$(fwd "$NB"); py "$NA" inject ic0 "$B_IC_MAC" "$A_IC" "$P_B"; sleep 0.3; f3=$(fwd "$NB")
echo "  without it: B ForwDatagrams +$((f3 - f2)) (sent back out of ic0 to A: a loop when A routes it to B too)"
run ip -n "$NB" rule add pref 900 iif ic0 to "$P_B/32" blackhole
g=$(py "$NH" who "$P_B" "$port")
[ $((f1 - f0)) = 0 ] && [ $((f3 - f2)) -ge 1 ] && [ "$g" = "node=A local=$P_B peer=$H_IP" ]
check c-no-loop $? "iif rule on B: dropped from ic0 (+$((f1 - f0))), forwarded without it (+$((f3 - f2))); front end still forwarded"

# ---------------------------------------------------------------- (d)
say "(d) rp_filter on A's interconnect (packets from $H_IP arrive on ic0)"
rpf() { # MODE WITH_POLICY_RULE(1/0) -> prints the result of H -> P_B
	sc "$NA" "net.ipv4.conf.ic0.rp_filter=$1"
	[ "$2" = 1 ] || run ip -n "$NA" rule del pref 1000 from "$P_B" lookup "$RT"
	local o; o=$(py "$NH" who "$P_B" "$port" 2)
	[ "$2" = 1 ] || run ip -n "$NA" rule add pref 1000 from "$P_B" lookup "$RT"
	echo "$o"
}
d_s1=$(rpf 1 1); echo "  strict, with the reply rule (from $P_B lookup $RT): $d_s1"
d_s0=$(rpf 1 0); echo "  strict, without the reply rule: $d_s0"
d_l0=$(rpf 2 0); echo "  loose, without the reply rule (replies leave A's fe0 with $P_B: asymmetric): $d_l0"
d_o0=$(rpf 0 0); echo "  off, without the reply rule: $d_o0"
d_l1=$(rpf 2 1); echo "  loose, with the reply rule (the design): $d_l1"
[[ "$d_s0" == error=* ]] && [ "$d_l1" = "node=A local=$P_B peer=$H_IP" ]
check d-rp_filter $? "strict without the reply rule drops H's SYN; loose works; strict WITH the rule: ${d_s1%% *}"

# ---------------------------------------------------------------- (g)
say "(g) latency: $rounds x $size B request/response, direct to A vs through B"
lat() { py "$NH" echo "$1" "$port" "$rounds" "$size"; }
declare -A L
py "$NH" echo "$P_A" "$port" 200 "$size" >/dev/null # warm-up
py "$NH" echo "$P_B" "$port" 200 "$size" >/dev/null
for round in 1 2 3; do
	for t in direct:$P_A via-B:$P_B; do
		o=$(lat "${t#*:}") || o='{"median_us": 0, "p99_us": 0, "mean_us": 0}'
		L[$round-${t%%:*}]=$o
		echo "  round $round ${t%%:*} (${t#*:}): $o"
	done
done
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
lat_ok=0
for k in "${!L[@]}"; do [ "$(field "${L[$k]}" n 2>/dev/null)" = "$rounds" ] || lat_ok=1; done
summary_lat=""
for round in 1 2 3; do
	for t in direct via-B; do
		o=${L[$round-$t]}
		summary_lat+=$(printf '  round %s %-7s median %6s us  p99 %6s us  mean %6s us\n' "$round" "$t" \
			"$(field "$o" median_us)" "$(field "$o" p99_us)" "$(field "$o" mean_us)")$'\n'
	done
done
check g-latency "$lat_ok" "$rounds round trips each, both paths completed"

# ---------------------------------------------------------------- (e)
say "(e) planned move of P from A to B (no address changes MAC)"
py "$NH" hold "$P_A" "$port" >"$work/hold1" & hp1=$!; pids+=($hp1)
py "$NH" hold "$P_B" "$port" >"$work/hold2" & hp2=$!; pids+=($hp2)
for _ in $(seq 100); do # both sessions up before the close (python starts slowly under load)
	[ -s "$work/hold1" ] && [ -s "$work/hold2" ] && break
	sleep 0.1
done
echo "  held: $(head -1 "$work/hold1") | $(head -1 "$work/hold2")"
fwd_a0=$(fwd "$NA")
# 1. close the pool's sessions on the old owner (RST to the hosts, which
#    log in again at once); the RST of the session on P_B leaves through B.
killed=$(in_ns "$NA" ss -K -t -n state established "( sport = :$port )" | tail -n +2 | wc -l)
echo "  ss -K on A closed $killed sessions"
wait "$hp1" "$hp2"
h1=$(tail -1 "$work/hold1") h2=$(tail -1 "$work/hold2")
echo "  host side: $P_A $h1, $P_B $h2"
# 2. A stops terminating P and forwards its own port's address to B;
# 3. B terminates P on both addresses.
t0=$(date +%s%N)
unterminate "$NA" "$P_A" "$P_B"
unforward "$NB" "$P_B" "$A_IC"
terminate "$NB" "$P_B" "$P_A"
forward "$NA" "$P_A" "$B_IC"
t1=$(date +%s%N)
echo "  re-plumbing took $(((t1 - t0) / 1000000)) ms (ip commands, not optimised)"
e1=$(py "$NH" who "$P_A" "$port"); echo "  -> $P_A: $e1"
e2=$(py "$NH" who "$P_B" "$port"); echo "  -> $P_B: $e2"
n1=$(neigh_mac "$P_A") n2=$(neigh_mac "$P_B"); fwd_a1=$(fwd "$NA")
echo "  H's neighbours: $P_A at $n1, $P_B at $n2; A forwarded $((fwd_a1 - fwd_a0)) packets"
[ "$h1" = closed=reset ] && [ "$h2" = closed=reset ]
check e1-sessions-reset $? "ss -K on the old owner: $P_A $h1, $P_B $h2"
[ "$e1" = "node=B local=$P_A peer=$H_IP" ] && [ "$e2" = "node=B local=$P_B peer=$H_IP" ] &&
	[ "$n1" = "$A_FE_MAC" ] && [ "$n2" = "$B_FE_MAC" ]
check e2-move $? "new sessions on both addresses end on B; MACs unchanged ($P_A at A's, $P_B at B's)"

say "giveback (the same steps, B -> A)"
in_ns "$NB" ss -K -t -n state established "( sport = :$port )" >/dev/null
unterminate "$NB" "$P_B" "$P_A"
unforward "$NA" "$P_A" "$B_IC"
terminate "$NA" "$P_A" "$P_B"
forward "$NB" "$P_B" "$A_IC"
gb1=$(py "$NH" who "$P_A" "$port") gb2=$(py "$NH" who "$P_B" "$port")
echo "  -> $gb1 | $gb2"
[ "$gb1" = "node=A local=$P_A peer=$H_IP" ] && [ "$gb2" = "node=A local=$P_B peer=$H_IP" ]
check e3-giveback $? "both addresses back on A"

# ---------------------------------------------------------------- (f)
say "(f) takeover: A dead, B terminates P on both addresses"
kill "${pids[0]}" 2>/dev/null # A's server
run ip -n "$NA" link set fe0 down
run ip -n "$NA" link set ic0 down
unforward "$NB" "$P_B" "$A_IC"
run ip -n "$NB" addr add "$P_B/32" dev fe0
run ip -n "$NB" addr add "$P_A/32" dev fe0 # A's port is dead: its address moves to B's MAC
f_before=$(neigh_mac "$P_A")
f_nogarp=$(py "$NH" who "$P_A" "$port" 2)
echo "  before a gratuitous ARP: H has $P_A at $f_before; connect: $f_nogarp"
py "$NB" garp fe0 "$P_A" 3
f_after=$(neigh_mac "$P_A")
f1=$(py "$NH" who "$P_A" "$port"); f2=$(py "$NH" who "$P_B" "$port")
echo "  after 3 gratuitous ARPs from B: H has $P_A at $f_after"
echo "  -> $P_A: $f1"; echo "  -> $P_B: $f2"
[ "$f_after" = "$B_FE_MAC" ] && [ "$f1" = "node=B local=$P_A peer=$H_IP" ] && [ "$f2" = "node=B local=$P_B peer=$H_IP" ]
check f-takeover $? "B serves both; $P_A moved to B's MAC, needed a gratuitous ARP (without: ${f_nogarp:0:40})"

# ---------------------------------------------------------------- summary
say "summary"
printf '  %-18s %-5s %s\n' check result note
fails=0
for i in "${!names[@]}"; do
	printf '  %-18s %-5s %s\n' "${names[$i]}" "${verdicts[$i]}" "${notes[$i]}"
	[ "${verdicts[$i]}" = PASS ] || fails=$((fails + 1))
done
echo
echo "  latency, $rounds x $size B echo over TCP (veths on one host: kernel forwarding cost only)"
printf '%s' "$summary_lat"
echo "  kernel $(uname -r)"
[ "$fails" = 0 ] && echo "  all checks passed" || echo "  $fails check(s) failed"
exit $((fails > 0))
