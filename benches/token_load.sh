#!/usr/bin/env bash
# Token endpoint throughput (SPEC §3.1): code exchanges and refreshes per second over TLS with
# keep-alive clients, the gateway on one core, on SQLite and on PostgreSQL with fsync on.
# Prints one table: engine, grant, build, target, grants/s, p50, p99, CPU µs per grant.
# See benches/README.md ("Token endpoint throughput").
#
#   bash benches/token_load.sh [options] NAME=BINARY [NAME=BINARY...]
#     --engines sqlite,postgres   which stores (default both)
#     --clients N                 keep-alive HTTPS clients (default 64)
#     --warmup S --duration S     per phase (default 2 and 8)
#     --codes N                   codes seeded per run (default 80000)
#     --rounds N                  interleaved rounds, each build once per round (default 1)
#     --server-cpus LIST          taskset list for the gateway (default 1)
#     --client-cpus LIST          taskset list for the load client and PostgreSQL (default 0)
#     --callgrind                 run each build under callgrind and add the user-space
#                                 instructions per grant (deterministic where grants/s is not)
#     --keep-tmp                  keep the temp folder (logs, configs)
# Needs openssl, taskset, curl and (for postgres) initdb/pg_ctl; builds the load client
# (examples/token_load.rs, release profile) if missing; TOKEN_LOAD=PATH uses another build of it.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ENGINES=sqlite,postgres
CLIENTS=64
WARMUP=2
DURATION=8
CODES=80000
ROUNDS=1
SERVER_CPUS=1
CLIENT_CPUS=0
KEEP=0
CALLGRIND=0
BUILDS=()
while [[ $# -gt 0 ]]; do
	case $1 in
	--engines) ENGINES=$2; shift 2 ;;
	--clients) CLIENTS=$2; shift 2 ;;
	--warmup) WARMUP=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--codes) CODES=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--server-cpus) SERVER_CPUS=$2; shift 2 ;;
	--client-cpus) CLIENT_CPUS=$2; shift 2 ;;
	--keep-tmp) KEEP=1; shift ;;
	--callgrind) CALLGRIND=1; shift ;;
	-h | --help) sed -n '2,20p' "$0"; exit 0 ;;
	*=*) BUILDS+=("$1"); shift ;;
	*) echo "unknown argument: $1" >&2; exit 2 ;;
	esac
done
if [[ ${#BUILDS[@]} -eq 0 ]]; then
	BUILDS=("gatehouse=$ROOT/target/dist/gatehouse")
fi
for tool in openssl taskset curl; do
	command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install -y $tool)" >&2; exit 1; }
done

LOADER=${TOKEN_LOAD:-$ROOT/target/release/examples/token_load}
if [[ -z ${TOKEN_LOAD:-} && (! -x $LOADER || $ROOT/examples/token_load.rs -nt $LOADER) ]]; then
	(cd "$ROOT" && cargo build --release --example token_load)
fi

TMP=$(mktemp -d)
PG_DATA=""
PG_BIN=""
SERVER_PID=""
cleanup() {
	[[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
	if [[ -n $PG_DATA ]]; then
		pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate stop >/dev/null 2>&1 || true
	fi
	if [[ $KEEP -eq 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# A throwaway CA and a server certificate for 127.0.0.1 (webpki refuses a self-signed CA
# certificate as the server's own).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$TMP/ca.key" \
	-out "$TMP/ca.pem" -days 2 -subj /CN=token-load-ca >/dev/null 2>&1
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$TMP/key.pem" \
	-out "$TMP/server.csr" -subj /CN=127.0.0.1 >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$TMP/server.ext"
openssl x509 -req -in "$TMP/server.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" -CAcreateserial \
	-out "$TMP/cert.pem" -days 2 -extfile "$TMP/server.ext" >/dev/null 2>&1
openssl genpkey -algorithm ed25519 -out "$TMP/signing.pem" >/dev/null 2>&1

# A PostgreSQL cluster with the durability settings of a production server (fsync and
# synchronous_commit on, full page writes), on the load client's CPUs.
start_postgres() {
	PG_BIN=${GATEHOUSE_PG_BIN:-$(dirname "$(readlink -f "$(command -v initdb || echo /usr/lib/postgresql/bin/initdb)")")}
	[[ -x $PG_BIN/initdb ]] || { echo "initdb not found (set GATEHOUSE_PG_BIN)" >&2; exit 1; }
	mkdir -p "$TMP/pg"
	[[ $(id -u) -eq 0 ]] && chown postgres:postgres "$TMP/pg" && chmod 755 "$TMP"
	PG_DATA=$TMP/pg/data
	pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 >/dev/null
	PG_PORT=$(port)
	pg taskset -c "$CLIENT_CPUS" "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$TMP/pg/log" -w -o \
		"-c listen_addresses=127.0.0.1 -p $PG_PORT -k $TMP/pg -c fsync=on -c synchronous_commit=on -c full_page_writes=on -c max_connections=200" \
		start >/dev/null
}

# run_one ENGINE NAME BINARY ROUND: seeds a fresh store, starts BINARY on it, runs the client.
run_one() {
	local engine=$1 name=$2 bin=$3 round=$4 dir url tls admin
	dir=$TMP/$engine-$name-$round
	mkdir -p "$dir"
	cp "$TMP"/{cert,key,signing,ca}.pem "$dir/"
	if [[ $engine == sqlite ]]; then
		url="sqlite://gatehouse.db"
	else
		local db="b_${name//[^a-zA-Z0-9]/_}_$round"
		pg "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE $db" postgres
		url="postgres://postgres@127.0.0.1:$PG_PORT/$db"
	fi
	"$LOADER" seed "$url" "$dir" "$CODES" "$dir/codes.txt" 2>>"$dir/seed.log"
	tls=$(port)
	admin=$(port)
	cat >"$dir/gatehouse.toml" <<-EOF
		[server]
		listen = "127.0.0.1:$tls"
		public_url = "https://127.0.0.1:$tls"
		[server.tls]
		cert = "cert.pem"
		key = "key.pem"
		[admin]
		listen = "127.0.0.1:$admin"
		[log]
		level = "warn"
		[store]
		url = "$url"
		[oauth]
		signing_keys = ["signing.pem"]
		[[users]]
		name = "alice"
		password_hash = "\$argon2id\$v=19\$m=19456,t=2,p=1\$c2FsdHNhbHQ\$aGFzaGhhc2hoYXNoaGFzaA"
		max_scope = "WRITE"
	EOF
	local wrap=() ready=100
	unset TOKEN_LOAD_HOOK
	if [[ $CALLGRIND -eq 1 ]]; then
		# Counting each phase's measured window: the hook zeroes the counters when it opens and
		# dumps them (the phase's totals into ir.txt) when it closes.
		wrap=(valgrind --tool=callgrind "--callgrind-out-file=$dir/callgrind.%p")
		ready=1200
		cat >"$dir/hook.sh" <<-'EOF'
			pid=$(cat "$(dirname "$0")/server.pid")
			case $1 in
			start) callgrind_control -z "$pid" >/dev/null ;;
			stop)
				callgrind_control -d "$2" "$pid" >/dev/null
				dump=$(ls -t "$(dirname "$0")"/callgrind.*.* | head -1)
				echo "$2 $(grep -h '^summary:\|^totals:' "$dump" | head -1 | awk '{print $2}')" >>"$(dirname "$0")/ir.txt"
				;;
			esac
		EOF
		export TOKEN_LOAD_HOOK="bash $dir/hook.sh"
	fi
	TOKIO_WORKER_THREADS=1 taskset -c "$SERVER_CPUS" "${wrap[@]}" "$bin" serve --config "$dir/gatehouse.toml" \
		>"$dir/gatehouse.log" 2>&1 &
	SERVER_PID=$!
	echo "$SERVER_PID" >"$dir/server.pid"
	local i
	for i in $(seq "$ready"); do
		curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break
		sleep 0.1
	done
	local load1 out
	load1=$(cut -d' ' -f1 /proc/loadavg)
	out=$(taskset -c "$CLIENT_CPUS" "$LOADER" run "https://127.0.0.1:$tls" "$dir/ca.pem" \
		"$dir/codes.txt" "$CLIENTS" "$WARMUP" "$DURATION" "$SERVER_PID" 2>"$dir/load.err") || {
		echo "load client failed for $name on $engine: $(tail -3 "$dir/load.err")" >&2
	}
	kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=""
	while read -r line; do
		[[ -z $line ]] && continue
		local phase=${line#phase=} ir=-
		phase=${phase%% *}
		[[ -f $dir/ir.txt ]] && ir=$(awk -v p="$phase" '$1 == p {print $2}' "$dir/ir.txt")
		echo "$engine $name $round load=$load1 $line ir=${ir:--}" >>"$TMP/results.txt"
	done <<<"$out"
	[[ -s $dir/load.err ]] && sed 's/^/  /' "$dir/load.err" >&2
	true
}

IFS=, read -ra ENGINE_LIST <<<"$ENGINES"
for engine in "${ENGINE_LIST[@]}"; do
	[[ $engine == postgres && -z $PG_DATA ]] && start_postgres
	for round in $(seq "$ROUNDS"); do
		for build in "${BUILDS[@]}"; do
			run_one "$engine" "${build%%=*}" "${build#*=}" "$round"
		done
	done
done

echo
echo "token endpoint, $CLIENTS keep-alive TLS clients, gateway on CPU $SERVER_CPUS, ${DURATION}s per phase after ${WARMUP}s warm-up ($(date -u +%FT%TZ), uptime: $(uptime | sed 's/.*load/load/'))"
printf '%-8s %-8s %-10s %5s %8s %8s %8s %8s %7s %6s %10s %s\n' engine grant build round target grants/s p50ms p99ms cpu_us errors instr/grant load
while read -r engine name round load rest; do
	declare -A f=()
	for kv in $rest; do f[${kv%%=*}]=${kv#*=}; done
	target=5000
	[[ $engine == postgres ]] && target=2000
	per=-
	[[ ${f[ir]} != - && ${f[ok]} -gt 0 ]] && per=$((f[ir] / f[ok]))
	printf '%-8s %-8s %-10s %5s %8s %8s %8s %8s %7s %6s %10s %s\n' "$engine" "${f[phase]}" "$name" "$round" "≥$target" \
		"${f[rate]}" "${f[p50_ms]}" "${f[p99_ms]}" "${f[cpu_us]}" "${f[errors]}" "$per" "${load#load=}"
done <"$TMP/results.txt"
mkdir -p "$ROOT/target/token_load"
cp "$TMP/results.txt" "$ROOT/target/token_load/results-$(date -u +%Y%m%dT%H%M%SZ).txt"
