#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind: a deterministic companion to the
# wrk runs of load.sh and ab.sh, whose requests/s move ±10–20% with the neighbours on a shared
# machine. Each gatehouse build runs under valgrind behind the same nginx upstream; after 500
# unmeasured requests, N requests (curl, keep-alive, 32 at a time) are counted, and the
# instructions executed in user space are divided by N. The kernel's share is not counted:
# compare builds with this, and the whole proxy with load.sh. See benches/README.md.
#
#   bash benches/instructions.sh [-n N] NAME=BINARY [NAME=BINARY...]
#   e.g. bash benches/instructions.sh before=/tmp/gatehouse-old after=target/dist/gatehouse
#
# Two reference proxies are counted the same way when named: a BINARY called `nginx` runs as
# load.sh's nginx reverse proxy (one process), and one called `hyper_floor` is the example of
# that name (`cargo build --profile dist --example hyper_floor`), the cheapest hyper-based proxy:
#   bash benches/instructions.sh nginx=$(command -v nginx) \
#       floor=target/dist/examples/hyper_floor gatehouse=target/dist/gatehouse
#
# AUTH, ROUTE_EXTRA and TOKEN_CMD (environment) work as in ab.sh. The callgrind files are kept
# in target/instructions/NAME.callgrind for `callgrind_annotate --inclusive=yes`.
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true
N=10000
if [[ ${1:-} == -n ]]; then
	N=$2
	shift 2
fi
[[ $# -ge 1 ]] || { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
for tool in valgrind callgrind_control nginx curl python3 openssl; do
	command -v "$tool" >/dev/null || { echo "instructions.sh: $tool is missing" >&2; exit 1; }
done
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOAD=$ROOT/benches/load
OUT=$ROOT/target/instructions
mkdir -p "$OUT"
W=$(mktemp -d /tmp/gatehouse-instructions.XXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.5; rm -rf "$W"' EXIT
source "$LOAD/common.sh"
make_keys "$W"
UP=$(port) UPT=$(port)
mkdir -p "$W/upstream"
fill "$LOAD/upstream.nginx.conf.in" "PREFIX=$W/upstream" WORKERS=1 "USER_DIRECTIVE=$USER_DIRECTIVE" \
	"CERT=$W/cert.pem" "KEY=$W/key.pem" "BODY=$BODY" "UPSTREAM_HTTP_PORT=$UP" \
	"UPSTREAM_TLS_PORT=$UPT" >"$W/upstream/nginx.conf"
nginx -e "$W/upstream/error.log" -p "$W/upstream" -c "$W/upstream/nginx.conf" -g 'daemon off;' &

H=()
for nb in "$@"; do
	name=${nb%%=*} bin=${nb#*=}
	[[ -x $bin ]] || { echo "instructions.sh: $bin is not executable" >&2; exit 1; }
	bin=$(realpath "$bin")
	mkdir -p "$W/$name"
	cp "$W"/*.pem "$W/$name/"
	P=$(port) PT=$(port) PA=$(port)
	server_command "$W/$name" "$bin" "$P" "$PT" "$PA" "$UP"
	(cd "$W/$name" && TOKIO_WORKER_THREADS=1 exec valgrind --tool=callgrind --instr-atstart=no \
		--callgrind-out-file="$W/$name/callgrind.%p" "${SERVER_COMMAND[@]}" >"$W/$name/log" 2>&1) &
	up=0
	for _ in $(seq 120); do
		curl -s -o /dev/null "http://127.0.0.1:$P/" && { up=1; break; }
		sleep 0.5
	done
	((up)) || { echo "instructions.sh: $name did not start" >&2; tail "$W/$name/log" >&2; exit 1; }
	# The references (nginx, hyper_floor) send the last gatehouse's token, so that every
	# proxy reads the same bytes: name them after a gatehouse build when TOKEN_CMD is set.
	if [[ -n ${TOKEN_CMD:-} && -f $W/$name/gatehouse.toml ]]; then
		TOKEN=$(GATEHOUSE_BIN="$bin" GATEHOUSE_CONFIG="$W/$name/gatehouse.toml" bash -c "$TOKEN_CMD")
		H=(-H "Authorization: Bearer $TOKEN")
	fi
	code=$(curl -s -o /dev/null -w '%{http_code}' "${H[@]}" "http://127.0.0.1:$P/")
	[[ $code == 200 ]] || { echo "instructions.sh: $name answers $code" >&2; exit 1; }
	curl -s -Z --parallel-max 32 "${H[@]}" -o /dev/null "http://127.0.0.1:$P/?warm=[1-500]" 2>/dev/null
	vpid=$(pgrep -f "callgrind.*$W/$name/callgrind" | head -1)
	callgrind_control -i on "$vpid" >/dev/null 2>&1
	curl -s -Z --parallel-max 32 "${H[@]}" -o /dev/null "http://127.0.0.1:$P/?n=[1-$N]" 2>/dev/null
	callgrind_control -d "$vpid" >/dev/null 2>&1
	callgrind_control -i off "$vpid" >/dev/null 2>&1
	dump=$(ls "$W/$name"/callgrind.*.* | head -1)
	total=$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")
	cp "$dump" "$OUT/$name.callgrind"
	kill "$vpid"
	printf '%-14s %7d instructions per request  (%d requests; %s)\n' "$name" $((total / N)) "$N" \
		"target/instructions/$name.callgrind"
done
