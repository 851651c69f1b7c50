#!/usr/bin/env bash
# Load benchmark of forward-auth (SPEC §7.4): one nginx in front of a static upstream, over TLS,
# measured with wrk in one run in these configurations:
#   nginx                    no authorization at all
#   nginx + static 204       auth_request to a `return 204` location (the cheapest auth service)
#   nginx + TLS static       auth_request to another nginx answering 200 over TLS (keep-alive):
#                            the cheapest auth service that is a server of its own
#   nginx + gatehouse        auth_request to gatehouse's /auth/verify over TLS (keep-alive), a
#                            PAT checked on a bearer route (a token-cache hit after the first);
#                            measured twice: gatehouse on nginx's CPU (the auth service paid from
#                            the proxy's CPU budget) and on the load CPU (beside the other servers)
# Every request carries the same Authorization header. Prints requests/s, p50, p99 and each
# row's ratio to "nginx + static 204" (target for gatehouse: >= 0.8), with the load average.
# See benches/README.md.
#
#   bash benches/forward_auth.sh [--duration 8s] [--rounds 2] [--connections 64] [--no-build]
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
LOAD="$SCRIPT_DIR/load"
# shellcheck source=benches/load/common.sh
source "$LOAD/common.sh"

DURATION=8s
WARMUP=2s
ROUNDS=2
CONNECTIONS=64
THREADS=2
PROXY_CPUS=1      # nginx, and gatehouse beside it: the auth service shares the proxy's CPU
LOAD_CPUS=0       # wrk and the upstream
GATEHOUSE_BIN="$REPO_ROOT/target/dist/gatehouse"
BUILD=auto
NGINX=${NGINX:-/usr/sbin/nginx}

usage() {
	sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	cat <<'EOT'
Options:
  --duration D        each measurement, wrk syntax (default 8s)
  --warmup D          unmeasured wrk run before each (default 2s)
  --rounds N          interleaved rounds, the table shows the median (default 2)
  --connections N     wrk connections (default 64)
  --threads N         wrk threads (default 2)
  --proxy-cpus LIST   nginx's CPUs (default 1)
  --load-cpus LIST    wrk's, the upstream's and the TLS static auth server's CPUs (default 0)
  --gatehouse PATH    binary (default target/dist/gatehouse; built with --profile dist if absent)
  --no-build          never build
EOT
}

die() { echo "forward_auth.sh: $*" >&2; exit 1; }
log() { echo "==> $*" >&2; }
while [[ $# -gt 0 ]]; do
	case $1 in
	--duration) DURATION=$2; shift 2 ;;
	--warmup) WARMUP=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--connections) CONNECTIONS=$2; shift 2 ;;
	--threads) THREADS=$2; shift 2 ;;
	--proxy-cpus) PROXY_CPUS=$2; shift 2 ;;
	--load-cpus) LOAD_CPUS=$2; shift 2 ;;
	--gatehouse) GATEHOUSE_BIN=$2; shift 2 ;;
	--no-build) BUILD=never; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown option $1 (see --help)" ;;
	esac
done
for tool in wrk openssl taskset python3 curl; do
	command -v "$tool" >/dev/null || die "$tool is missing"
done
[[ -x $NGINX ]] || die "$NGINX is missing (Debian: apt-get install nginx)"
if [[ ! -x $GATEHOUSE_BIN ]]; then
	[[ $BUILD == never ]] && die "$GATEHOUSE_BIN is missing (build it: cargo build --profile dist)"
	log "cargo build --profile dist --bin gatehouse"
	(cd "$REPO_ROOT" && cargo build --profile dist --bin gatehouse) >&2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-fwdauth.XXXXXX")
PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/upstream" "$WORK/front" "$WORK/gatehouse"
make_keys "$WORK"
cp "$WORK"/{cert,key,signing}.pem "$WORK/gatehouse/"

UPSTREAM_HTTP_PORT=$(port) UPSTREAM_TLS_PORT=$(port) GW_TLS=$(port) GW_ADMIN=$(port)
PLAIN_PORT=$(port) STATIC_PORT=$(port) GATEHOUSE_PORT=$(port) REMOTE_STATIC_PORT=$(port)

# The upstream: a static 200, as in benches/load.sh.
fill "$LOAD/upstream.nginx.conf.in" "PREFIX=$WORK/upstream" WORKERS=1 "USER_DIRECTIVE=$USER_DIRECTIVE" \
	"CERT=$WORK/cert.pem" "KEY=$WORK/key.pem" "UPSTREAM_HTTP_PORT=$UPSTREAM_HTTP_PORT" \
	"UPSTREAM_TLS_PORT=$UPSTREAM_TLS_PORT" "BODY=$BODY" >"$WORK/upstream/nginx.conf"
fill "$LOAD/forward_auth.nginx.conf.in" "PREFIX=$WORK/front" "USER_DIRECTIVE=$USER_DIRECTIVE" \
	"CERT=$WORK/cert.pem" "KEY=$WORK/key.pem" "UPSTREAM_HTTP_PORT=$UPSTREAM_HTTP_PORT" \
	"GATEHOUSE_TLS_PORT=$GW_TLS" "PLAIN_PORT=$PLAIN_PORT" "STATIC_PORT=$STATIC_PORT" \
	"GATEHOUSE_PORT=$GATEHOUSE_PORT" "REMOTE_STATIC_PORT=$REMOTE_STATIC_PORT" \
	"UPSTREAM_TLS_PORT=$UPSTREAM_TLS_PORT" >"$WORK/front/nginx.conf"
cat >"$WORK/gatehouse/gatehouse.toml" <<EOT
[server]
listen = "127.0.0.1:$GW_TLS"
public_url = "https://127.0.0.1:$GW_TLS"
trusted_proxies = ["127.0.0.1/32"]
[server.tls]
cert = "cert.pem"
key = "key.pem"
[admin]
listen = "127.0.0.1:$GW_ADMIN"
[log]
level = "warn"
[store]
url = "sqlite://gatehouse.db"
[oauth]
signing_keys = ["signing.pem"]
[[users]]
name = "bench"
password_hash = "\$argon2id\$v=19\$m=19456,t=2,p=1\$sEw2UuLoCLVi/Zf09uDRZw\$ckYkfW0YdOdc6j/IXdHqtsLloLeZ6lrbi3WRdhR8++A"
max_scope = "READ"
[[routes]]
path = "/"
upstream = ""
auth = "bearer"
scope = "READ"
EOT

start() { # NAME CPUS CMD...
	local name=$1 cpus=$2
	shift 2
	taskset -c "$cpus" "$@" >"$WORK/$name.log" 2>&1 &
	PIDS+=($!)
}
start upstream "$LOAD_CPUS" "$NGINX" -e "$WORK/upstream/error.log" -p "$WORK/upstream" -c "$WORK/upstream/nginx.conf" -g 'daemon off;'
start front "$PROXY_CPUS" "$NGINX" -e "$WORK/front/error.log" -p "$WORK/front" -c "$WORK/front/nginx.conf" -g 'daemon off;'
TOKIO_WORKER_THREADS=1 start gatehouse "$PROXY_CPUS" "$GATEHOUSE_BIN" serve --config "$WORK/gatehouse/gatehouse.toml"
GATEHOUSE_PID=${PIDS[-1]}
for _ in $(seq 100); do
	curl -fs "http://127.0.0.1:$GW_ADMIN/readyz" >/dev/null 2>&1 && break
	sleep 0.2
done
curl -fs "http://127.0.0.1:$GW_ADMIN/readyz" >/dev/null || { cat "$WORK/gatehouse.log" >&2; die "gatehouse is not ready"; }
TOKEN=$("$GATEHOUSE_BIN" token create --config "$WORK/gatehouse/gatehouse.toml" --user bench --scope READ --ttl 1d 2>/dev/null)
AUTH="Authorization: Bearer $TOKEN"

# Each configuration must answer 200 before it is measured (a 401 is cheap and would flatter).
for port in "$PLAIN_PORT" "$STATIC_PORT" "$REMOTE_STATIC_PORT" "$GATEHOUSE_PORT"; do
	code=$(curl -sk -o /dev/null -w '%{http_code}' -H "$AUTH" "https://127.0.0.1:$port/page")
	[[ $code == 200 ]] || { cat "$WORK/front/error.log" "$WORK/gatehouse.log" >&2; die "port $port answered $code, not 200"; }
done
# nginx keeps an auth_request connection only when the answer has no body: gatehouse's 200
# must say Content-Length: 0, or every check would pay a TLS handshake.
head=$(curl -sk --http1.1 -D- -o /dev/null -H "$AUTH" -H "X-Original-URL: https://127.0.0.1/page" \
	"https://127.0.0.1:$GW_TLS/auth/verify" | tr -d '\r')
grep -qi '^content-length: 0$' <<<"$head" || die "gatehouse's 200 has a body or no Content-Length: $head"
code=$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$GATEHOUSE_PORT/page")
[[ $code == 401 ]] || die "without a token nginx + gatehouse answered $code, not 401"

NAMES=("nginx" "nginx + static 204" "nginx + TLS static" "nginx + gatehouse (CPU $PROXY_CPUS)" "nginx + gatehouse (CPU $LOAD_CPUS)")
PORTS=("$PLAIN_PORT" "$STATIC_PORT" "$REMOTE_STATIC_PORT" "$GATEHOUSE_PORT" "$GATEHOUSE_PORT")
# Where gatehouse runs during each row (moved with taskset between rows; one tokio worker).
GATEHOUSE_AT=("$PROXY_CPUS" "$PROXY_CPUS" "$PROXY_CPUS" "$PROXY_CPUS" "$LOAD_CPUS")
declare -A RPS P50 P99
# CPU time (clock ticks) used so far by PID and its children (nginx's worker), all threads.
ticks() {
	local pid total=0 f
	for pid in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
		f=$(cut -d' ' -f14,15 "/proc/$pid/stat" 2>/dev/null) || continue
		total=$((total + ${f% *} + ${f#* }))
	done
	echo "$total"
}
HZ=$(getconf CLK_TCK)
FRONT_PID=${PIDS[1]}
declare -A NGINX_US GATEHOUSE_US
measure() { # INDEX ROUND
	local i=$1 r=$2 out="$WORK/wrk-$1-$2.txt"
	local url="https://127.0.0.1:${PORTS[$i]}/page"
	taskset -a -p -c "${GATEHOUSE_AT[$i]}" "$GATEHOUSE_PID" >/dev/null
	if [[ $WARMUP != 0 ]]; then
		taskset -c "$LOAD_CPUS" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -H "$AUTH" "$url" >/dev/null
	fi
	local front0 gate0 front1 gate1 requests
	front0=$(ticks "$FRONT_PID") gate0=$(ticks "$GATEHOUSE_PID")
	taskset -c "$LOAD_CPUS" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "$AUTH" "$url" >"$out"
	front1=$(ticks "$FRONT_PID") gate1=$(ticks "$GATEHOUSE_PID")
	grep -q "Non-2xx" "$out" && die "${NAMES[$i]}: non-2xx answers during the run: $(cat "$out")"
	requests=$(awk '/requests in/ {print $1}' "$out")
	# CPU µs per request: less sensitive than requests/s to what else the machine runs.
	NGINX_US[$i,$r]=$(awk -v t=$((front1 - front0)) -v n="$requests" -v hz="$HZ" 'BEGIN {printf "%.1f", t * 1e6 / hz / n}')
	GATEHOUSE_US[$i,$r]=$(awk -v t=$((gate1 - gate0)) -v n="$requests" -v hz="$HZ" 'BEGIN {printf "%.1f", t * 1e6 / hz / n}')
	RPS[$i,$r]=$(awk '/^Requests\/sec/ {print $2}' "$out")
	P50[$i,$r]=$(awk '$1 == "50%" {print $2}' "$out")
	P99[$i,$r]=$(awk '$1 == "99%" {print $2}' "$out")
}
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before: $LOAD_BEFORE; $ROUNDS round(s) of ${DURATION} per configuration"
for ((r = 0; r < ROUNDS; r++)); do
	order=(0 1 2 3 4)
	((r % 2)) && order=(4 3 2 1 0)
	for i in "${order[@]}"; do
		log "round $((r + 1)): ${NAMES[$i]}"
		measure "$i" "$r"
	done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
declare -A MED MED_NGINX MED_GATE
for i in "${!NAMES[@]}"; do
	vals=() nv=() gv=()
	for ((r = 0; r < ROUNDS; r++)); do
		vals+=("${RPS[$i,$r]}") nv+=("${NGINX_US[$i,$r]}") gv+=("${GATEHOUSE_US[$i,$r]}")
	done
	MED[$i]=$(median "${vals[@]}") MED_NGINX[$i]=$(median "${nv[@]}") MED_GATE[$i]=$(median "${gv[@]}")
done
echo
echo "forward-auth over TLS: wrk -t$THREADS -c$CONNECTIONS -d$DURATION, median of $ROUNDS round(s);"
echo "nginx on CPU $PROXY_CPUS, wrk + upstream + TLS static on CPU $LOAD_CPUS ($(nproc) CPUs); gatehouse: one tokio worker"
echo "load average before $LOAD_BEFORE, after $LOAD_AFTER (1, 5, 15 min)"
echo "ratio: requests/s over nginx + static 204's; CPU ratio: nginx + static 204's CPU per request over"
echo "this row's nginx + gatehouse CPU per request (what the ratio would be with the CPU to itself)"
printf '%-30s %9s %9s %9s %7s %11s %11s %9s   %s\n' configuration "req/s" "p50" "p99" ratio "nginx µs/r" "gateh. µs/r" "CPU ratio" "each round (req/s)"
for i in "${!NAMES[@]}"; do
	rounds=""
	for ((r = 0; r < ROUNDS; r++)); do rounds+="${RPS[$i,$r]} "; done
	ratio=$(awk -v a="${MED[$i]}" -v b="${MED[1]}" 'BEGIN {printf "%.2f", a / b}')
	cpu_ratio=$(awk -v base="${MED_NGINX[1]}" -v n="${MED_NGINX[$i]}" -v g="${MED_GATE[$i]}" 'BEGIN {printf "%.2f", base / (n + g)}')
	printf '%-30s %9.0f %9s %9s %7s %11s %11s %9s   %s\n' "${NAMES[$i]}" "${MED[$i]}" "${P50[$i,0]}" "${P99[$i,0]}" "$ratio" \
		"${MED_NGINX[$i]}" "${MED_GATE[$i]}" "$cpu_ratio" "$rounds"
done
