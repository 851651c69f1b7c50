#!/usr/bin/env bash
# The memory envelope of gatehouse beside nginx, in one run: resident memory (RSS) idle, per idle
# TLS 1.3 keep-alive connection, per cached token, and with both together. See benches/README.md.
#
#   bash benches/memory.sh [--connections N] [--tokens N] [--workers N] [--gatehouse BIN] [--no-build]
#                          [--gatehouse-env 'NAME=VALUE ...']   (e.g. LD_PRELOAD=... to try an allocator)
#
# nginx (terminating TLS, proxying to the bench upstream, no auth) and gatehouse (a bearer
# route) are measured one after the other on the same machine with the same certificate:
#   1. idle: RSS after start and one request;
#   2. connections: N TLS connections (default 10,000), each with one request answered, held
#      open and idle; (RSS with them - idle RSS) / N;
#   3. gatehouse only, the connections still held: M distinct PATs (default 100,000) inserted
#      into its store and each presented once, so the token cache holds M validations;
#      (RSS after - RSS before) / M;
#   4. combined: gatehouse's RSS with N connections and M cached tokens, against nginx's RSS
#      with the N connections alone.
# nginx's RSS is the sum of its master and workers. Needs nginx, python3, openssl, curl.
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true
CONNS=10000
TOKENS=100000
WORKERS=1
BUILD=1
GATEHOUSE_ENV=()
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GATEHOUSE=$ROOT/target/dist/gatehouse
while (($#)); do
	case $1 in
	--connections) CONNS=$2; shift 2 ;;
	--tokens) TOKENS=$2; shift 2 ;;
	--workers) WORKERS=$2; shift 2 ;;
	--gatehouse) GATEHOUSE=$2; BUILD=0; shift 2 ;;
	--no-build) BUILD=0; shift ;;
	--gatehouse-env) read -ra GATEHOUSE_ENV <<<"$2"; shift 2 ;;
	*) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done
for tool in nginx python3 openssl curl; do
	command -v "$tool" >/dev/null || { echo "memory.sh: $tool is missing (apt-get install -y $tool)" >&2; exit 1; }
done
LOAD=$ROOT/benches/load
MEM=$ROOT/benches/memory
source "$LOAD/common.sh"
if ((BUILD)) && [[ ! -x $GATEHOUSE ]]; then
	(cd "$ROOT" && cargo build --profile dist)
fi
[[ -x $GATEHOUSE ]] || { echo "memory.sh: $GATEHOUSE is missing" >&2; exit 1; }
# Each side holds the connections plus a margin.
ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) > CONNS + 500)) || { echo "memory.sh: open-file limit $(ulimit -n) is below $CONNS + 500" >&2; exit 1; }

W=$(mktemp -d /tmp/gatehouse-memory.XXXX)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	sleep 0.3
	rm -rf "$W"
}
trap cleanup EXIT
log() { printf '[memory] %s\n' "$*" >&2; }

# rss_kib PID...: the summed VmRSS of the processes, KiB.
rss_kib() {
	local p total=0 v
	for p in "$@"; do
		v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
		total=$((total + ${v:-0}))
	done
	echo "$total"
}
nginx_pids() { echo "$1" $(pgrep -P "$1" || true); }
wait_port() {
	local _
	for _ in $(seq 200); do
		curl -sk -o /dev/null "$1" && return 0
		sleep 0.1
	done
	echo "memory.sh: nothing answers $1" >&2
	return 1
}
settle() { sleep 3; }

make_keys "$W"
UP=$(port)
mkdir -p "$W/upstream" "$W/nginx" "$W/gatehouse"
fill "$LOAD/upstream.nginx.conf.in" "PREFIX=$W/upstream" WORKERS=1 "USER_DIRECTIVE=$USER_DIRECTIVE" \
	"CERT=$W/cert.pem" "KEY=$W/key.pem" "BODY=$BODY" "UPSTREAM_HTTP_PORT=$UP" \
	"UPSTREAM_TLS_PORT=$(port)" >"$W/upstream/nginx.conf"
nginx -e "$W/upstream/error.log" -p "$W/upstream" -c "$W/upstream/nginx.conf" -g 'daemon off;' &
PIDS+=($!)
wait_port "http://127.0.0.1:$UP/"

# hold_start HOST_PORT [header]: starts the holding client on a coprocess, waits for `held N`.
hold_start() {
	local port=$1
	shift
	coproc HOLD { exec python3 "$MEM/clients.py" hold 127.0.0.1 "$port" "$CONNS" "$@"; }
	PIDS+=("$HOLD_PID")
	local line
	read -r line <&"${HOLD[0]}"
	log "$line"
	HELD=${line#held }
	HELD=${HELD%% *}
}
hold_alive() {
	local line
	echo check >&"${HOLD[1]}"
	read -r line <&"${HOLD[0]}"
	echo "${line#alive }"
}
hold_stop() {
	echo quit >&"${HOLD[1]}" || true
	wait "$HOLD_PID" 2>/dev/null || true
}

# --- nginx ---------------------------------------------------------------------------------
NP=$(port)
fill "$MEM/nginx.conf.in" "PREFIX=$W/nginx" "WORKERS=$WORKERS" "USER_DIRECTIVE=$USER_DIRECTIVE" \
	"CERT=$W/cert.pem" "KEY=$W/key.pem" "UPSTREAM_PORT=$UP" "TLS_PORT=$NP" >"$W/nginx/nginx.conf"
nginx -e "$W/nginx/error.log" -p "$W/nginx" -c "$W/nginx/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_port "https://127.0.0.1:$NP/"
settle
N_IDLE=$(rss_kib $(nginx_pids "$NGINX_PID"))
log "nginx idle: $N_IDLE KiB; opening $CONNS connections"
hold_start "$NP"
N_HELD=$HELD
settle
N_CONNS=$(rss_kib $(nginx_pids "$NGINX_PID"))
N_ALIVE=$(hold_alive)
log "nginx with $N_HELD connections: $N_CONNS KiB ($N_ALIVE still open)"
hold_stop
kill "$NGINX_PID"
wait "$NGINX_PID" 2>/dev/null || true

# --- gatehouse -----------------------------------------------------------------------------
cp "$W"/*.pem "$W/gatehouse/"
# The ports are picked again when a start fails: right after nginx's connections closed, a port
# that was free a moment ago can still be held by one of them (TIME_WAIT).
for attempt in 1 2 3; do
	GP=$(port) GA=$(port)
	fill "$MEM/gatehouse.toml.in" "TLS_PORT=$GP" "ADMIN_PORT=$GA" "UPSTREAM_PORT=$UP" "EXTRA=" \
		>"$W/gatehouse/gatehouse.toml"
	(cd "$W/gatehouse" && TOKIO_WORKER_THREADS=$WORKERS exec env "${GATEHOUSE_ENV[@]}" "$GATEHOUSE" serve --config gatehouse.toml \
		>"$W/gatehouse/log" 2>&1) &
	G_PID=$!
	PIDS+=("$G_PID")
	wait_port "http://127.0.0.1:$GA/readyz" && break
	log "gatehouse did not start (attempt $attempt): $(tail -n 3 "$W/gatehouse/log")"
	kill "$G_PID" 2>/dev/null || true
	wait "$G_PID" 2>/dev/null || true
	((attempt < 3)) || exit 1
	rm -f "$W/gatehouse/gatehouse.db"*
done
python3 "$MEM/seed_pats.py" "$W/gatehouse/gatehouse.db" 1 "$W/warm.tokens"
WARM=$(<"$W/warm.tokens")
code=$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $WARM" "https://127.0.0.1:$GP/")
[[ $code == 200 ]] || { echo "memory.sh: gatehouse answers $code"; tail "$W/gatehouse/log"; exit 1; }
log "seeding $TOKENS PATs"
python3 "$MEM/seed_pats.py" "$W/gatehouse/gatehouse.db" "$TOKENS" "$W/fill.tokens"
settle
G_IDLE=$(rss_kib "$G_PID")
log "gatehouse idle: $G_IDLE KiB; opening $CONNS connections"
hold_start "$GP" --header "Authorization: Bearer $WARM"
G_HELD=$HELD
settle
G_CONNS=$(rss_kib "$G_PID")
log "gatehouse with $G_HELD connections: $G_CONNS KiB; presenting $TOKENS tokens"
python3 "$MEM/clients.py" fill 127.0.0.1 "$GP" "$W/fill.tokens" >&2
settle
G_BOTH=$(rss_kib "$G_PID")
G_ENTRIES=$(curl -s "http://127.0.0.1:$GA/metrics" | awk '/^gatehouse_token_cache_entries / { print $2 }')
G_ALIVE=$(hold_alive)
log "gatehouse with $G_HELD connections and $G_ENTRIES cached tokens: $G_BOTH KiB ($G_ALIVE connections still open)"
hold_stop

# --- report --------------------------------------------------------------------------------
awk -v n_idle="$N_IDLE" -v n_conns="$N_CONNS" -v n_held="$N_HELD" -v g_idle="$G_IDLE" \
	-v g_conns="$G_CONNS" -v g_held="$G_HELD" -v g_both="$G_BOTH" -v tokens="$TOKENS" \
	-v entries="$G_ENTRIES" -v workers="$WORKERS" -v n_alive="$N_ALIVE" -v g_alive="$G_ALIVE" '
function mib(k) { return sprintf("%.1f MiB", k / 1024) }
function row(what, target, ref, ratio, verdict) { printf "%-38s %16s %16s %7s  %s\n", what, target, ref, ratio, verdict }
BEGIN {
	g_conn = (g_conns - g_idle) / g_held; n_conn = (n_conns - n_idle) / n_held
	g_tok = (g_both - g_conns) * 1024 / tokens
	printf "gatehouse memory envelope (RSS), %d idle TLS 1.3 keep-alive connections, %d cached tokens; %d worker(s) each\n\n", g_held, tokens, workers
	row("measure", "gatehouse", "nginx", "ratio", "target")
	row("idle", mib(g_idle), mib(n_idle), sprintf("%.2f", g_idle / n_idle), "")
	row("per idle TLS connection", sprintf("%.1f KiB", g_conn), sprintf("%.1f KiB", n_conn), sprintf("%.2f", g_conn / n_conn), (g_conn < n_conn ? "met" : "NOT met") " (< nginx)")
	row("per cached token", sprintf("%.0f B", g_tok), "-", "", (g_tok <= 300 ? "met" : "NOT met") " (<= 300 B)")
	row(sprintf("%d connections", g_held), mib(g_conns), mib(n_conns), sprintf("%.2f", g_conns / n_conns), "")
	row(sprintf("%d connections + %d tokens", g_held, tokens), mib(g_both), mib(n_conns) " (conns only)", sprintf("%.2f", g_both / n_conns), (g_both < n_conns ? "met" : "NOT met") " (< nginx with the connections alone)")
	printf "\nconnections still open at the end: gatehouse %s of %d, nginx %s of %d; token cache entries: %s\n", g_alive, g_held, n_alive, n_held, entries
}'
echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); $(uptime | sed 's/^ *//')"
echo "gatehouse: $GATEHOUSE ($(date -u -r "$GATEHOUSE" +%Y-%m-%dT%H:%MZ))${GATEHOUSE_ENV[*]:+ with ${GATEHOUSE_ENV[*]}}; $(nginx -v 2>&1)"
