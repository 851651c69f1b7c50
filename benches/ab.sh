#!/usr/bin/env bash
# A/B of gatehouse builds against nginx: every server starts once (nginx upstream on CPU 0,
# nginx proxy and each gatehouse on CPU 1 with one worker), then ROUNDS interleaved wrk runs
# (odd rounds in reverse order). Prints, for each server, the median requests/s with its ratio
# to nginx, and the median CPU time the server spent per request (user and system µs, from
# /proc/PID/stat over the measured run). Cheaper and less noisy than benches/load.sh for "did
# this change help": all binaries are measured minutes apart, against the same upstream. See
# benches/README.md.
#
#   bash benches/ab.sh ROUNDS DURATION NAME=BINARY [NAME=BINARY...]
#   e.g. bash benches/ab.sh 6 4s before=/tmp/gatehouse-old after=target/dist/gatehouse
#
# SCHEME=https measures over TLS (both proxies terminate it; default http). AUTH, ROUTE_EXTRA
# and TOKEN_CMD (environment) work as load.sh's --auth, --route-toml and --token-cmd
# (TOKEN_CMD sees GATEHOUSE_CONFIG of the first gatehouse). A BINARY named hyper_floor is the
# example of that name, the cheapest hyper-based proxy, for reference
# (`cargo build --profile dist --example hyper_floor`).
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true
[[ $# -ge 3 ]] || { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
ROUNDS=$1 DUR=$2
shift 2
SCHEME=${SCHEME:-http}
[[ $SCHEME == http || $SCHEME == https ]] || { echo "ab.sh: SCHEME is http or https" >&2; exit 2; }
for tool in nginx wrk taskset python3 openssl curl; do
	command -v "$tool" >/dev/null || { echo "ab.sh: $tool is missing" >&2; exit 1; }
done
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOAD=$ROOT/benches/load
W=$(mktemp -d /tmp/gatehouse-ab.XXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.3; rm -rf "$W"' EXIT
source "$LOAD/common.sh"
make_keys "$W"
UP=$(port) UPT=$(port) NG=$(port) NGT=$(port)
for name in upstream proxy; do
	mkdir -p "$W/$name"
	template=$LOAD/upstream.nginx.conf.in
	[[ $name == proxy ]] && template=$LOAD/proxy.nginx.conf.in
	fill "$template" "PREFIX=$W/$name" WORKERS=1 "USER_DIRECTIVE=$USER_DIRECTIVE" "CERT=$W/cert.pem" \
		"KEY=$W/key.pem" "BODY=$BODY" "UPSTREAM_HTTP_PORT=$UP" "UPSTREAM_TLS_PORT=$UPT" \
		"NGINX_HTTP_PORT=$NG" "NGINX_TLS_PORT=$NGT" >"$W/$name/nginx.conf"
done
taskset -c 0 nginx -e "$W/upstream/error.log" -p "$W/upstream" -c "$W/upstream/nginx.conf" -g 'daemon off;' &
taskset -c 1 nginx -e "$W/proxy/error.log" -p "$W/proxy" -c "$W/proxy/nginx.conf" -g 'daemon off;' &
# url NAME PLAIN_PORT TLS_PORT: where NAME is measured.
declare -A URL=() MATCH=()
url() { if [[ $SCHEME == https ]]; then URL[$1]="https://127.0.0.1:$3/"; else URL[$1]="http://127.0.0.1:$2/"; fi; }
url nginx "$NG" "$NGT"
NAMES=(nginx)
FIRST_GATEHOUSE=
for nb in "$@"; do
	name=${nb%%=*} bin=${nb#*=}
	[[ -x $bin ]] || { echo "ab.sh: $bin is not executable" >&2; exit 1; }
	[[ $name != nginx ]] || { echo "ab.sh: the name nginx is the reference proxy's" >&2; exit 2; }
	mkdir -p "$W/$name"
	cp "$W"/*.pem "$W/$name/"
	P=$(port) PT=$(port) PA=$(port)
	server_command "$W/$name" "$bin" "$P" "$PT" "$PA" "$UP"
	TOKIO_WORKER_THREADS=1 taskset -c 1 "${SERVER_COMMAND[@]}" >"$W/$name/log" 2>&1 &
	MATCH[$name]="${SERVER_COMMAND[*]}"
	if [[ -f $W/$name/gatehouse.toml && -z $FIRST_GATEHOUSE ]]; then
		FIRST_GATEHOUSE=$name=$bin
	fi
	url "$name" "$P" "$PT"
	NAMES+=("$name")
done
sleep 2
H=()
if [[ -n ${TOKEN_CMD:-} ]]; then
	[[ -n $FIRST_GATEHOUSE ]] || { echo "ab.sh: TOKEN_CMD needs a gatehouse binary" >&2; exit 2; }
	TOKEN=$(GATEHOUSE_BIN="${FIRST_GATEHOUSE#*=}" GATEHOUSE_CONFIG="$W/${FIRST_GATEHOUSE%%=*}/gatehouse.toml" \
		bash -c "$TOKEN_CMD")
	H=(-H "Authorization: Bearer $TOKEN")
fi
for n in "${NAMES[@]}"; do
	code=$(curl -sk -o /dev/null -w '%{http_code}' "${H[@]}" "${URL[$n]}")
	[[ $code == 200 ]] || { echo "ab.sh: $n answers $code" >&2; tail "$W/$n/log" 2>/dev/null; exit 1; }
done
# pids NAME: the processes of server NAME (taskset execs the server, so they are the servers';
# nginx's are its master and its worker, whose command line names no file).
pids() {
	if [[ $1 == nginx ]]; then
		cat "$W/proxy/nginx.pid" && pgrep -P "$(cat "$W/proxy/nginx.pid")"
	else
		pgrep -f "${MATCH[$1]}"
	fi
}
# cpu_ticks NAME: user and system clock ticks so far of every process of server NAME.
cpu_ticks() {
	local pid u=0 s=0 stat
	for pid in $(pids "$1"); do
		stat=$(cut -d')' -f2- "/proc/$pid/stat" 2>/dev/null) || continue
		read -r _ _ _ _ _ _ _ _ _ _ _ ut st _ <<<"$stat"
		u=$((u + ut)) s=$((s + st))
	done
	echo "$u $s"
}
TICK=$(getconf CLK_TCK)
declare -A RUNS=() USER_US=() SYS_US=()
for ((r = 0; r < ROUNDS; r++)); do
	order=("${NAMES[@]}")
	((r % 2)) && mapfile -t order < <(printf '%s\n' "${NAMES[@]}" | tac)
	for n in "${order[@]}"; do
		taskset -c 0 wrk -t2 -c64 -d1s "${H[@]}" "${URL[$n]}" >/dev/null
		read -r u0 s0 < <(cpu_ticks "$n")
		out=$(taskset -c 0 wrk -t2 -c64 -d"$DUR" "${H[@]}" "${URL[$n]}")
		read -r u1 s1 < <(cpu_ticks "$n")
		rps=$(awk '/Requests\/sec/ { print int($2) }' <<<"$out")
		requests=$(awk '/requests in/ { print $1 }' <<<"$out")
		RUNS[$n]+="$rps "
		USER_US[$n]+="$(awk -v t=$((u1 - u0)) -v hz="$TICK" -v r="$requests" 'BEGIN { printf "%.2f", t / hz * 1e6 / r }') "
		SYS_US[$n]+="$(awk -v t=$((s1 - s0)) -v hz="$TICK" -v r="$requests" 'BEGIN { printf "%.2f", t / hz * 1e6 / r }') "
	done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
NGINX_MEDIAN=$(median <<<"${RUNS[nginx]}")
echo "$SCHEME, $ROUNDS rounds of $DUR; cpu = the server's own, µs per request (median)"
for n in "${NAMES[@]}"; do
	m=$(median <<<"${RUNS[$n]}")
	printf '%-14s median %6.0f  ratio %.2f  cpu user %5.2f sys %5.2f   runs: %s\n' "$n" "$m" \
		"$(awk -v a="$m" -v b="$NGINX_MEDIAN" 'BEGIN { print a / b }')" \
		"$(median <<<"${USER_US[$n]}")" "$(median <<<"${SYS_US[$n]}")" "${RUNS[$n]}"
done
