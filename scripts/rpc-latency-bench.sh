#!/usr/bin/env bash
# The target over ggml RPC behind a real network path, at several round
# trips: `edgespec rpc-server` runs inside a network namespace of its own,
# joined to this machine by a veth pair, and `edgespec bench --target-rpc`
# reaches it across that pair. Everything stays on this machine.
#
#   scripts/rpc-latency-bench.sh OUT BENCH-ARGS...
#   e.g. scripts/rpc-latency-bench.sh bench-out/rpc -m target.gguf -md drafter.gguf \
#          -f code=benches/prompts/humaneval.jsonl --modes target,lookup,hybrid -n 64
#
# Environment: RTTS (round trips in ms, default "0 2 10 30"), SERVER_CPU and
# CLIENT_CPU (the cores the server and the bench are pinned to, default 1
# and 0: the two machines' work does not share a core), EDGESPEC (the
# binary, default target/release/edgespec), KEYED=1 (the server made with
# --key-file OUT/rpc.key and the bench given it: the encrypted link;
# llama.cpp's peer modes speak plain RPC only), PEER=1 (a second, plain
# server beside it, on the same delayed path, for llama.cpp's peer modes:
# the bench gets --peer-rpc; a ggml server serves one client at a time).
#
# The delay goes on the namespace's end of the pair only: `tc netem` on its
# veth when the kernel has it, else scripts/delay-relay.py listening on that
# end (half the round trip each way). Nothing on the machine's own
# interfaces changes, not even lo; the namespace, the pair and every process
# the script started go away when it ends, however it ends. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n '6,9p' "$0"; exit 2; }
out=$1; shift
rtts=${RTTS:-0 2 10 30}
server_cpu=${SERVER_CPU:-1}
client_cpu=${CLIENT_CPU:-0}
edgespec=$(realpath "${EDGESPEC:-target/release/edgespec}")
[ "$(id -u)" -eq 0 ] || { echo "needs root (ip netns)" >&2; exit 1; }
mkdir -p "$out"

tag=$$
ns=edgespec-rpc-$tag
host_if=esh$tag; ns_if=esn$tag
subnet=10.231.$((tag % 250))
host_ip=$subnet.1; ns_ip=$subnet.2
server_port=50052; relay_port=50053
peer_port=50054; peer_relay_port=50055
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true   # takes the veth pair with it
}
trap cleanup EXIT INT TERM

ip netns add "$ns"
ip link add "$host_if" type veth peer name "$ns_if"
ip link set "$ns_if" netns "$ns"
ip addr add "$host_ip/30" dev "$host_if"
ip link set "$host_if" up
ip netns exec "$ns" ip addr add "$ns_ip/30" dev "$ns_if"
ip netns exec "$ns" ip link set "$ns_if" up
ip netns exec "$ns" ip link set lo up

if [ "${KEYED:-0}" = 1 ]; then
  rm -f "$out/rpc.key"
  link=(--key-file "$out/rpc.key"); client_link=(--rpc-key-file "$out/rpc.key")
else
  link=(--insecure-rpc); client_link=(--insecure-rpc)
fi
ip netns exec "$ns" taskset -c "$server_cpu" "$edgespec" rpc-server \
  --host "$ns_ip" --port "$server_port" -t 1 "${link[@]}" >"$out/rpc-server.log" 2>&1 &
pids+=($!)
if [ "${PEER:-0}" = 1 ]; then
  ip netns exec "$ns" taskset -c "$server_cpu" "$edgespec" rpc-server \
    --host "$ns_ip" --port "$peer_port" -t 1 --insecure-rpc --cache "$out/peer-cache" \
    >"$out/peer-rpc-server.log" 2>&1 &
  pids+=($!)
fi

# Median round trip of 20 RPC HELLOs through the path (each bounded to 5 s).
measure_rtt() {
  python3 - "$1" "$2" <<'PY'
import socket, statistics, struct, sys, time
host, port = sys.argv[1], int(sys.argv[2])
times = []
for _ in range(20):
    with socket.create_connection((host, port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.perf_counter()
        s.sendall(bytes([14]) + struct.pack("<Q", 24) + bytes(24))
        got = b""
        while len(got) < 36:
            chunk = s.recv(36 - len(got))
            if not chunk:
                break
            got += chunk
        times.append((time.perf_counter() - start) * 1e3)
print(f"{statistics.median(times):.2f}")
PY
}

wait_for_port() { # HOST PORT
  for _ in $(seq 100); do
    python3 -c "import socket,sys; socket.create_connection(('$1', $2), timeout=1).close()" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1:$2" >&2; return 1
}

netem=no
if ip netns exec "$ns" tc qdisc add dev "$ns_if" root netem delay 0ms 2>/dev/null; then
  netem=yes
fi
wait_for_port "$ns_ip" "$server_port"
[ "${PEER:-0}" = 1 ] && wait_for_port "$ns_ip" "$peer_port"
echo "| round trip set | measured (HELLO, median of 20) | delay by |" >"$out/paths.md"
echo "|---|---|---|" >>"$out/paths.md"
for rtt in $rtts; do
  if [ "$netem" = yes ]; then
    ip netns exec "$ns" tc qdisc change dev "$ns_if" root netem delay "${rtt}ms"
    endpoint=$ns_ip:$server_port; peer_endpoint=$ns_ip:$peer_port; how="tc netem"
  else
    half=$(python3 -c "print($rtt / 2)")
    ip netns exec "$ns" taskset -c "$server_cpu" python3 scripts/delay-relay.py \
      --listen "$ns_ip:$relay_port" --to "$ns_ip:$server_port" --delay-ms "$half" \
      --max-connections 4096 --max-seconds 7200 &
    relay=$!; pids+=("$relay")
    wait_for_port "$ns_ip" "$relay_port"
    endpoint=$ns_ip:$relay_port; how="delay-relay.py in the namespace"
    if [ "${PEER:-0}" = 1 ]; then
      ip netns exec "$ns" taskset -c "$server_cpu" python3 scripts/delay-relay.py \
        --listen "$ns_ip:$peer_relay_port" --to "$ns_ip:$peer_port" --delay-ms "$half" \
        --max-connections 4096 --max-seconds 7200 &
      peer_relay=$!; pids+=("$peer_relay")
      wait_for_port "$ns_ip" "$peer_relay_port"
      peer_endpoint=$ns_ip:$peer_relay_port
    fi
  fi
  peer=()
  [ "${PEER:-0}" = 1 ] && peer=(--peer-rpc "$peer_endpoint")
  measured=$(measure_rtt "${endpoint%:*}" "${endpoint#*:}")
  echo "| $rtt ms | $measured ms | $how |" >>"$out/paths.md"
  echo "== round trip $rtt ms (measured $measured ms, $how)"
  [ "${KEYED:-0}" = 1 ] && for _ in $(seq 100); do [ -s "$out/rpc.key" ] && break; sleep 0.1; done
  taskset -c "$client_cpu" "$edgespec" bench --target-rpc "$endpoint" "${client_link[@]}" \
    "${peer[@]}" --out "$out/rtt-$rtt" "$@"
  if [ "$netem" = no ]; then
    kill "$relay" ${peer_relay:-}; wait "$relay" ${peer_relay:-} 2>/dev/null || true
  fi
done
cat "$out/paths.md"
