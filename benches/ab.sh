#!/usr/bin/env bash
# A/B of gatehouse builds against nginx on plain HTTP: every server starts once
# (nginx upstream on CPU 0, nginx proxy and each gatehouse on CPU 1 with one
# worker), then ROUNDS interleaved wrk runs (odd rounds in reverse order) and
# the median requests/s of each, with its ratio to nginx. Cheaper and less
# noisy than benches/load.sh for "did this change help": all binaries are
# measured minutes apart, against the same upstream. See benches/README.md.
#
#   bash benches/ab.sh ROUNDS DURATION NAME=BINARY [NAME=BINARY...]
#   e.g. bash benches/ab.sh 6 4s before=/tmp/gatehouse-old after=target/release/gatehouse
#
# AUTH, ROUTE_EXTRA and TOKEN_CMD (environment) work as load.sh's --auth,
# --route-toml and --token-cmd (TOKEN_CMD sees GATEHOUSE_CONFIG of the first binary).
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true
[[ $# -ge 3 ]] || { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
ROUNDS=$1 DUR=$2
shift 2
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
declare -A URL=([nginx]="http://127.0.0.1:$NG/")
NAMES=(nginx)
for nb in "$@"; do
	name=${nb%%=*} bin=${nb#*=}
	[[ -x $bin ]] || { echo "ab.sh: $bin is not executable" >&2; exit 1; }
	mkdir -p "$W/$name"
	cp "$W"/*.pem "$W/$name/"
	P=$(port) PT=$(port) PA=$(port)
	gatehouse_config "$P" "$PT" "$PA" "$UP" >"$W/$name/gatehouse.toml"
	TOKIO_WORKER_THREADS=1 taskset -c 1 "$bin" serve --config "$W/$name/gatehouse.toml" >"$W/$name/log" 2>&1 &
	URL[$name]="http://127.0.0.1:$P/"
	NAMES+=("$name")
done
sleep 2
H=()
if [[ -n ${TOKEN_CMD:-} ]]; then
	TOKEN=$(GATEHOUSE_BIN="${1#*=}" GATEHOUSE_CONFIG="$W/${NAMES[1]}/gatehouse.toml" bash -c "$TOKEN_CMD")
	H=(-H "Authorization: Bearer $TOKEN")
fi
for n in "${NAMES[@]}"; do
	code=$(curl -s -o /dev/null -w '%{http_code}' "${H[@]}" "${URL[$n]}")
	[[ $code == 200 ]] || { echo "ab.sh: $n answers $code" >&2; tail "$W/$n/log" 2>/dev/null; exit 1; }
done
declare -A RUNS=()
for ((r = 0; r < ROUNDS; r++)); do
	order=("${NAMES[@]}")
	((r % 2)) && mapfile -t order < <(printf '%s\n' "${NAMES[@]}" | tac)
	for n in "${order[@]}"; do
		taskset -c 0 wrk -t2 -c64 -d1s "${H[@]}" "${URL[$n]}" >/dev/null
		rps=$(taskset -c 0 wrk -t2 -c64 -d"$DUR" "${H[@]}" "${URL[$n]}" | awk '/Requests\/sec/ { print int($2) }')
		RUNS[$n]+="$rps "
	done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
NGINX_MEDIAN=$(median <<<"${RUNS[nginx]}")
for n in "${NAMES[@]}"; do
	m=$(median <<<"${RUNS[$n]}")
	printf '%-14s median %6d  ratio %.2f   runs: %s\n' "$n" "$m" "$(awk -v a="$m" -v b="$NGINX_MEDIAN" 'BEGIN { print a / b }')" "${RUNS[$n]}"
done
