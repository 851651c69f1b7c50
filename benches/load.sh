#!/usr/bin/env bash
# Load benchmark of the whole proxy: the upstream directly, nginx as a plain
# reverse proxy, and gatehouse, each over plain HTTP and over TLS, measured with
# wrk in one run. Prints requests/s, p50 and p99 per (target, transport) and the
# ratio gatehouse/nginx. See benches/README.md.
#
#   bash benches/load.sh [--duration 10s] [--connections 64] [--threads 2] ...
#   bash benches/load.sh --help
set -euo pipefail
# bash >= 5.2 would expand '&' in ${var//pat/repl}; the templates are filled with
# that, and a token or a route line may contain '&'.
shopt -u patsub_replacement 2>/dev/null || true

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
LOAD_DIR="$SCRIPT_DIR/load"

# ---------------------------------------------------------------- defaults ----
DURATION=10s
WARMUP=2s
CONNECTIONS=64
THREADS=2
ROUNDS=1
TARGETS=direct,nginx,gatehouse
TRANSPORTS=http,tls
REQ_PATH=/
PIN=1
PROXY_CPUS=1
LOAD_CPUS=0
GATEHOUSE_BIN="$REPO_ROOT/target/dist/gatehouse"
BUILD=auto # auto: build if the binary is absent; always: --build; never: --no-build
GATEHOUSE_TEMPLATE="$LOAD_DIR/gatehouse.toml.in"
AUTH=none
TOKEN=""
TOKEN_CMD=""
ROUTE_EXTRA=()
LOG_LEVEL=warn
READY_TIMEOUT=30
OUT_DIR="$REPO_ROOT/target/load"
WRITE_RESULTS=1
KEEP_TMP=0
WAIT_QUIET=0
QUIET_PCT=25
BODY="hello from the gatehouse load-bench upstream, 64 bytes of body.."

usage() {
	cat <<'EOF'
Usage: bash benches/load.sh [options]

Measures, in one run, wrk against: the upstream directly ("direct"), nginx as a
plain keep-alive reverse proxy ("nginx") and gatehouse ("gatehouse"), each over
plain HTTP and over TLS 1.3; prints requests/s, p50, p99 and the ratio
gatehouse/nginx. Everything listens on 127.0.0.1, on free ports.

Load:
  --duration D        length of each measurement, wrk syntax (default 10s)
  --warmup D          unmeasured wrk run before each measurement, 0 = none (default 2s)
  --connections N     wrk connections (default 64)
  --threads N         wrk threads (default 2)
  --rounds N          repeat the whole set N times, interleaved, even rounds in
                      reverse target order; the table shows the median per row
                      (default 1)
  --targets LIST      subset of direct,nginx,gatehouse (default: all)
  --transports LIST   subset of http,tls (default: both)
  --path P            request path (default /)
  --wait-quiet S      before each measurement, wait up to S seconds until the
                      rest of the machine uses under 25% of one CPU (default 0:
                      do not wait; the "other" column shows the noise anyway)

CPU placement:
  --proxy-cpus LIST   CPUs of the proxy under test, nginx or gatehouse (default 1);
                      nginx worker_processes and gatehouse TOKIO_WORKER_THREADS
                      are set to the number of CPUs in LIST
  --load-cpus LIST    CPUs of wrk and of the upstream (default 0)
  --no-pin            no taskset at all; nginx and gatehouse get one worker per CPU

gatehouse:
  --gatehouse PATH    binary (default target/dist/gatehouse)
  --build             always run 'cargo build --profile dist' first
  --no-build          never build; if the binary is missing the gatehouse rows
                      are skipped (default: build only if the binary is missing)
  --gatehouse-template FILE
                      config template (default benches/load/gatehouse.toml.in)
  --auth MODE         the benchmarked route's 'auth' value (default none)
  --route-toml LINE   extra TOML line for the benchmarked [[routes]] table
                      (repeatable), e.g. --route-toml 'scopes = ["read"]'
  --token TOKEN       send 'Authorization: Bearer TOKEN' (to every target, so
                      the requests are the same everywhere)
  --token-cmd CMD     like --token, the token being CMD's stdout; CMD runs with
                      bash once gatehouse is ready, with GATEHOUSE_BIN,
                      GATEHOUSE_CONFIG, GATEHOUSE_URL (TLS), GATEHOUSE_PLAIN_URL
                      and GATEHOUSE_METRICS_URL in its environment
  --log-level L       gatehouse [log] level (default warn)
  --ready-timeout S   seconds to wait for gatehouse's /readyz (default 30)

Output:
  --out-dir DIR       raw wrk output, configs, results.csv, results.json
                      (default target/load; one sub-folder per run)
  --no-results        do not write DIR
  --keep-tmp          keep the temp dir (configs, certs, server logs)
  -h, --help          this text
EOF
}

die() {
	echo "load.sh: $*" >&2
	exit 1
}
log() { echo "==> $*" >&2; }
warn() { echo "load.sh: warning: $*" >&2; }

need_arg() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value (see --help)"; }

while [[ $# -gt 0 ]]; do
	case $1 in
	--duration) need_arg "$@"; DURATION=$2; shift 2 ;;
	--warmup) need_arg "$@"; WARMUP=$2; shift 2 ;;
	--connections) need_arg "$@"; CONNECTIONS=$2; shift 2 ;;
	--threads) need_arg "$@"; THREADS=$2; shift 2 ;;
	--rounds) need_arg "$@"; ROUNDS=$2; shift 2 ;;
	--targets) need_arg "$@"; TARGETS=$2; shift 2 ;;
	--transports) need_arg "$@"; TRANSPORTS=$2; shift 2 ;;
	--path) need_arg "$@"; REQ_PATH=$2; shift 2 ;;
	--wait-quiet) need_arg "$@"; WAIT_QUIET=$2; shift 2 ;;
	--proxy-cpus) need_arg "$@"; PROXY_CPUS=$2; shift 2 ;;
	--load-cpus) need_arg "$@"; LOAD_CPUS=$2; shift 2 ;;
	--no-pin) PIN=0; shift ;;
	--gatehouse) need_arg "$@"; GATEHOUSE_BIN=$2; shift 2 ;;
	--build) BUILD=always; shift ;;
	--no-build) BUILD=never; shift ;;
	--gatehouse-template) need_arg "$@"; GATEHOUSE_TEMPLATE=$2; shift 2 ;;
	--auth) need_arg "$@"; AUTH=$2; shift 2 ;;
	--route-toml) need_arg "$@"; ROUTE_EXTRA+=("$2"); shift 2 ;;
	--token) need_arg "$@"; TOKEN=$2; shift 2 ;;
	--token-cmd) need_arg "$@"; TOKEN_CMD=$2; shift 2 ;;
	--log-level) need_arg "$@"; LOG_LEVEL=$2; shift 2 ;;
	--ready-timeout) need_arg "$@"; READY_TIMEOUT=$2; shift 2 ;;
	--out-dir) need_arg "$@"; OUT_DIR=$2; shift 2 ;;
	--no-results) WRITE_RESULTS=0; shift ;;
	--keep-tmp) KEEP_TMP=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown option '$1' (see --help)" ;;
	esac
done

# ------------------------------------------------------------ validation ----
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_pos() { [[ $1 =~ ^[0-9]+$ ]] && (($1 > 0)); }
is_wrk_duration() { [[ $1 =~ ^[0-9]+[smh]?$ ]]; }
is_pos "$CONNECTIONS" || die "--connections must be a positive integer"
is_pos "$THREADS" || die "--threads must be a positive integer"
((THREADS <= CONNECTIONS)) || die "--threads must not exceed --connections (a wrk rule)"
is_pos "$ROUNDS" || die "--rounds must be a positive integer"
is_uint "$READY_TIMEOUT" || die "--ready-timeout must be an integer (seconds)"
is_uint "$WAIT_QUIET" || die "--wait-quiet must be an integer (seconds)"
is_wrk_duration "$DURATION" || die "--duration must look like 10s, 1m or 10"
is_wrk_duration "$WARMUP" || die "--warmup must look like 2s, 0 or 2"
[[ $REQ_PATH == /* ]] || die "--path must start with /"
[[ $AUTH =~ ^[A-Za-z0-9_.-]+$ ]] || die "--auth must be a plain word"
[[ -z $TOKEN || -z $TOKEN_CMD ]] || die "--token and --token-cmd exclude each other"
[[ -f $GATEHOUSE_TEMPLATE ]] || die "no such template: $GATEHOUSE_TEMPLATE"

to_seconds() { # 10s, 2m, 1h, 10 -> seconds
	local v=${1%[smh]}
	case $1 in *m) echo $((v * 60)) ;; *h) echo $((v * 3600)) ;; *) echo "$v" ;; esac
}
DURATION_S=$(to_seconds "$DURATION")
WARMUP_S=$(to_seconds "$WARMUP")
((DURATION_S > 0)) || die "--duration must be longer than 0"

declare -A WANT=()
for t in ${TARGETS//,/ }; do
	case $t in direct | nginx | gatehouse) WANT[$t]=1 ;; *) die "unknown target '$t'" ;; esac
done
for t in ${TRANSPORTS//,/ }; do
	case $t in http | tls) WANT[$t]=1 ;; *) die "unknown transport '$t'" ;; esac
done
ALL_TARGETS=()
for t in direct nginx gatehouse; do [[ -n ${WANT[$t]:-} ]] && ALL_TARGETS+=("$t"); done
ALL_TRANSPORTS=()
for t in http tls; do [[ -n ${WANT[$t]:-} ]] && ALL_TRANSPORTS+=("$t"); done
((${#ALL_TARGETS[@]} > 0)) || die "--targets selects nothing"
((${#ALL_TRANSPORTS[@]} > 0)) || die "--transports selects nothing"

# ---------------------------------------------------------- dependencies ----
missing_cmds=()
missing_pkgs=()
for pair in wrk:wrk nginx:nginx-light openssl:openssl curl:curl taskset:util-linux awk:mawk getconf:libc-bin; do
	cmd=${pair%%:*}
	if ! command -v "$cmd" >/dev/null 2>&1 && ! [[ -x /usr/sbin/$cmd ]]; then
		missing_cmds+=("$cmd")
		missing_pkgs+=("${pair#*:}")
	fi
done
if ((${#missing_cmds[@]} > 0)); then
	echo "load.sh: missing: ${missing_cmds[*]}" >&2
	echo "load.sh: install with: apt-get install -y ${missing_pkgs[*]}" >&2
	exit 1
fi
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)

# Expand a CPU list such as "0,2-3" and count it.
cpu_count() {
	local n=0 part a b
	for part in ${1//,/ }; do
		if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
			a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]}
			((b >= a)) || die "bad CPU range '$part'"
			n=$((n + b - a + 1))
		elif [[ $part =~ ^[0-9]+$ ]]; then
			n=$((n + 1))
		else
			die "bad CPU list '$1'"
		fi
	done
	echo "$n"
}
NCPU=$(getconf _NPROCESSORS_ONLN)
if ((PIN)); then
	taskset -c "$PROXY_CPUS" true 2>/dev/null || die "cannot pin to --proxy-cpus $PROXY_CPUS (this machine has $NCPU CPUs)"
	taskset -c "$LOAD_CPUS" true 2>/dev/null || die "cannot pin to --load-cpus $LOAD_CPUS (this machine has $NCPU CPUs)"
	PROXY_WORKERS=$(cpu_count "$PROXY_CPUS")
	UPSTREAM_WORKERS=1
	PLACEMENT="proxy on CPU $PROXY_CPUS, wrk + upstream on CPU $LOAD_CPUS"
else
	PROXY_WORKERS=$NCPU
	UPSTREAM_WORKERS=1
	PLACEMENT="not pinned ($NCPU CPUs shared by everything)"
fi

# ------------------------------------------------------- temp dir, trap ----
# fd 3 = the original stderr, for the traps: they may fire while a command's
# stderr is redirected into a wrk output file.
exec 3>&2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-load.XXXXXX")
PIDS=()
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	local pid
	[[ -n ${WRK_PID:-} ]] && kill -TERM "$WRK_PID" 2>/dev/null
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	local deadline=$((SECONDS + 5))
	for pid in "${PIDS[@]}"; do
		while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if ((KEEP_TMP)); then
		echo "load.sh: temp dir kept: $WORK" >&3
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'echo "load.sh: interrupted" >&3; exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------ free ports ----
# Listening TCP ports on this machine, from /proc (no ss/netstat needed).
listening_ports() {
	local hex
	awk 'FNR > 1 && $4 == "0A" { n = split($2, a, ":"); print a[n] }' /proc/net/tcp /proc/net/tcp6 2>/dev/null |
		while read -r hex; do echo $((16#$hex)); done
}
declare -A TAKEN=()
while read -r p; do TAKEN[$p]=1; done < <(listening_ports)
# Pick below the ephemeral range so that no outgoing connection holds the port.
read -r EPH_LO _ </proc/sys/net/ipv4/ip_local_port_range
PORT_HI=$((EPH_LO > 11000 ? EPH_LO - 1 : 65000))
PORT_LO=$((EPH_LO > 11000 ? 10000 : EPH_LO + 1))
free_port() {
	local p i
	for ((i = 0; i < 1000; i++)); do
		p=$((PORT_LO + (RANDOM * 32768 + RANDOM) % (PORT_HI - PORT_LO)))
		if [[ -z ${TAKEN[$p]:-} ]]; then
			TAKEN[$p]=1
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}
# Assign (not in a subshell, so TAKEN is kept).
for v in UPSTREAM_HTTP_PORT UPSTREAM_TLS_PORT NGINX_HTTP_PORT NGINX_TLS_PORT \
	GATEHOUSE_HTTP_PORT GATEHOUSE_TLS_PORT GATEHOUSE_ADMIN_PORT; do
	p=$(free_port)
	[[ -n $p ]] || die "no free port found"
	TAKEN[$p]=1
	printf -v "$v" '%s' "$p"
done

# -------------------------------------------------------- file templates ----
# fill_template SRC DST NAME=VALUE... ; every @NAME@ in SRC is replaced.
fill_template() {
	local src=$1 dst=$2 text kv
	shift 2
	text=$(<"$src")
	for kv in "$@"; do
		text=${text//@${kv%%=*}@/${kv#*=}}
	done
	if [[ $text =~ @[A-Z][A-Z0-9_]*@ ]]; then
		die "$src: placeholder ${BASH_REMATCH[0]} left unfilled"
	fi
	printf '%s\n' "$text" >"$dst"
}

USER_DIRECTIVE="# (not root: nginx keeps the current user)"
[[ $(id -u) -eq 0 ]] && USER_DIRECTIVE="user root;  # the script runs as root; keeps the workers able to read the temp dir"

# --------------------------------------------------------------- certs ----
log "temp dir $WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
	-keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 2 -subj "/CN=127.0.0.1" \
	-addext "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$WORK/openssl.log" 2>&1 ||
	{ cat "$WORK/openssl.log" >&2; die "openssl could not make the self-signed certificate"; }
openssl genpkey -algorithm ed25519 -out "$WORK/signing.pem" >>"$WORK/openssl.log" 2>&1 ||
	{ cat "$WORK/openssl.log" >&2; die "openssl could not make the Ed25519 signing key"; }

# ------------------------------------------------------------- helpers ----
# start NAME CPUS CMD... : start in the background, log to $WORK/NAME.log
declare -A PID_OF=()
start() {
	local name=$1 cpus=$2
	shift 2
	local -a cmd=("$@")
	((PIN)) && cmd=(taskset -c "$cpus" "$@")
	# A simple command, so that $! is the server itself (taskset execs it), not
	# a subshell: the trap must be able to stop it, and its CPU time is read.
	"${cmd[@]}" >"$WORK/$name.log" 2>&1 &
	PID_OF[$name]=$!
	PIDS+=("$!")
}

# wait_ready NAME URL TIMEOUT_S : poll until URL answers 200.
wait_ready() {
	local name=$1 url=$2 deadline=$((SECONDS + $3))
	while ((SECONDS < deadline)); do
		if ! kill -0 "${PID_OF[$name]}" 2>/dev/null; then
			echo "load.sh: $name exited during start-up; last lines of its log:" >&2
			tail -n 20 "$WORK/$name.log" >&2 || true
			return 1
		fi
		if [[ $(curl -ks -o /dev/null -w '%{http_code}' --max-time 2 "$url" 2>/dev/null) == 200 ]]; then
			return 0
		fi
		sleep 0.2
	done
	echo "load.sh: $name not ready after $3 s ($url); last lines of its log:" >&2
	tail -n 20 "$WORK/$name.log" >&2 || true
	return 1
}

start_nginx() { # NAME TEMPLATE CPUS WORKERS
	local name=$1 template=$2 cpus=$3 workers=$4 prefix="$WORK/$1"
	mkdir -p "$prefix"
	fill_template "$template" "$prefix/nginx.conf" \
		"PREFIX=$prefix" "WORKERS=$workers" "USER_DIRECTIVE=$USER_DIRECTIVE" \
		"CERT=$WORK/cert.pem" "KEY=$WORK/key.pem" "BODY=$BODY" \
		"UPSTREAM_HTTP_PORT=$UPSTREAM_HTTP_PORT" "UPSTREAM_TLS_PORT=$UPSTREAM_TLS_PORT" \
		"NGINX_HTTP_PORT=$NGINX_HTTP_PORT" "NGINX_TLS_PORT=$NGINX_TLS_PORT"
	"$NGINX" -t -q -e "$prefix/error.log" -p "$prefix" -c "$prefix/nginx.conf" -g 'daemon off;' 2>&1 ||
		die "nginx rejected $prefix/nginx.conf (from $template)"
	start "$name" "$cpus" "$NGINX" -e "$prefix/error.log" -p "$prefix" -c "$prefix/nginx.conf" -g 'daemon off;'
}

# CPU ticks (user + system) of a process and of its direct children.
proc_ticks() {
	local pid=$1 total=0 p stat rest
	local -a f kids=()
	[[ -d /proc/$pid ]] || { echo 0; return; }
	read -ra kids <<<"$(cat /proc/"$pid"/task/*/children 2>/dev/null | tr '\n' ' ')"
	for p in "$pid" "${kids[@]}"; do
		stat=$(<"/proc/$p/stat") 2>/dev/null || continue
		rest=${stat##*) }
		read -ra f <<<"$rest"
		total=$((total + f[11] + f[12]))
	done
	echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)
# Jiffies of the whole machine, from /proc/stat: "total busy steal", where busy
# excludes idle, iowait and steal.
cpu_jiffies() {
	awk '$1 == "cpu" { t = 0; for (i = 2; i <= 9; i++) t += $i; print t, t - $5 - $6 - $9, $9; exit }' /proc/stat
}
# CPU used on this machine by everything, in % of one CPU, over $1 seconds.
machine_busy_pct() {
	local t0 b0 t1 b1 _s
	read -r t0 b0 _s < <(cpu_jiffies)
	sleep "$1"
	read -r t1 b1 _s < <(cpu_jiffies)
	awk -v db="$((b1 - b0))" -v tck="$CLK_TCK" -v s="$1" 'BEGIN { printf "%.0f", db / tck / s * 100 }'
}

# ----------------------------------------------------- gatehouse binary ----
GATEHOUSE_STATUS=""
if [[ -n ${WANT[gatehouse]:-} ]]; then
	if [[ $BUILD == always || ($BUILD == auto && ! -x $GATEHOUSE_BIN) ]]; then
		if [[ $GATEHOUSE_BIN != "$REPO_ROOT/target/dist/gatehouse" ]]; then
			warn "building with cargo, but --gatehouse points elsewhere ($GATEHOUSE_BIN)"
		fi
		log "cargo build --profile dist (in $REPO_ROOT)"
		if ! (cd "$REPO_ROOT" && cargo build --profile dist --bin gatehouse) >&2; then
			GATEHOUSE_STATUS="failed: cargo build --profile dist failed"
		fi
	fi
	if [[ -z $GATEHOUSE_STATUS && ! -x $GATEHOUSE_BIN ]]; then
		if [[ $BUILD == never ]]; then
			GATEHOUSE_STATUS="skipped: no binary at $GATEHOUSE_BIN (--no-build given)"
		else
			GATEHOUSE_STATUS="failed: no binary at $GATEHOUSE_BIN after the build"
		fi
	fi
	if [[ -z $GATEHOUSE_STATUS ]] && [[ -n $(find "$REPO_ROOT/src" "$REPO_ROOT/Cargo.toml" -newer "$GATEHOUSE_BIN" -print -quit 2>/dev/null) ]]; then
		warn "$GATEHOUSE_BIN is older than the sources; pass --build to rebuild it"
	fi
	[[ -n $GATEHOUSE_STATUS ]] && warn "gatehouse $GATEHOUSE_STATUS"
fi

# --------------------------------------------------------------- servers ----
log "ports: upstream $UPSTREAM_HTTP_PORT (tls $UPSTREAM_TLS_PORT), nginx $NGINX_HTTP_PORT (tls $NGINX_TLS_PORT), gatehouse $GATEHOUSE_HTTP_PORT (tls $GATEHOUSE_TLS_PORT, admin $GATEHOUSE_ADMIN_PORT)"
log "placement: $PLACEMENT; proxy workers: $PROXY_WORKERS"

start_nginx upstream "$LOAD_DIR/upstream.nginx.conf.in" "$LOAD_CPUS" "$UPSTREAM_WORKERS"
wait_ready upstream "http://127.0.0.1:$UPSTREAM_HTTP_PORT/" 10 || die "the upstream nginx did not start"

if [[ -n ${WANT[nginx]:-} ]]; then
	start_nginx proxy "$LOAD_DIR/proxy.nginx.conf.in" "$PROXY_CPUS" "$PROXY_WORKERS"
	wait_ready proxy "http://127.0.0.1:$NGINX_HTTP_PORT/" 10 || die "the nginx reverse proxy did not start"
fi

if [[ -n ${WANT[gatehouse]:-} && -z $GATEHOUSE_STATUS ]]; then
	route_extra=""
	for line in "${ROUTE_EXTRA[@]}"; do route_extra+="$line"$'\n'; done
	fill_template "$GATEHOUSE_TEMPLATE" "$WORK/gatehouse.toml" \
		"GATEHOUSE_TLS_PORT=$GATEHOUSE_TLS_PORT" "GATEHOUSE_HTTP_PORT=$GATEHOUSE_HTTP_PORT" \
		"GATEHOUSE_ADMIN_PORT=$GATEHOUSE_ADMIN_PORT" "UPSTREAM_HTTP_PORT=$UPSTREAM_HTTP_PORT" \
		"AUTH=$AUTH" "LOG_LEVEL=$LOG_LEVEL" "ROUTE_EXTRA=$route_extra"
	gh_env=(env)
	((PIN)) && gh_env+=("TOKIO_WORKER_THREADS=$PROXY_WORKERS")
	start gatehouse "$PROXY_CPUS" "${gh_env[@]}" "$GATEHOUSE_BIN" serve --config "$WORK/gatehouse.toml"
	if ! wait_ready gatehouse "http://127.0.0.1:$GATEHOUSE_ADMIN_PORT/readyz" "$READY_TIMEOUT"; then
		GATEHOUSE_STATUS="failed: not ready (see the log above; --keep-tmp keeps $WORK/gatehouse.log)"
		warn "gatehouse $GATEHOUSE_STATUS"
	fi
fi

if [[ -n $TOKEN_CMD ]]; then
	[[ -n ${WANT[gatehouse]:-} && -z $GATEHOUSE_STATUS ]] || die "--token-cmd needs a running gatehouse"
	log "token: running --token-cmd"
	TOKEN=$(GATEHOUSE_BIN="$GATEHOUSE_BIN" GATEHOUSE_CONFIG="$WORK/gatehouse.toml" \
		GATEHOUSE_URL="https://127.0.0.1:$GATEHOUSE_TLS_PORT" \
		GATEHOUSE_PLAIN_URL="http://127.0.0.1:$GATEHOUSE_HTTP_PORT" \
		GATEHOUSE_METRICS_URL="http://127.0.0.1:$GATEHOUSE_ADMIN_PORT" \
		bash -c "$TOKEN_CMD") || die "--token-cmd failed"
	TOKEN=${TOKEN%$'\n'}
	[[ -n $TOKEN ]] || die "--token-cmd printed no token"
fi
HEADER_ARGS=()
[[ -n $TOKEN ]] && HEADER_ARGS=(-H "Authorization: Bearer $TOKEN")

url_of() { # TARGET TRANSPORT
	local port
	case $1/$2 in
	direct/http) port=$UPSTREAM_HTTP_PORT ;;
	direct/tls) port=$UPSTREAM_TLS_PORT ;;
	nginx/http) port=$NGINX_HTTP_PORT ;;
	nginx/tls) port=$NGINX_TLS_PORT ;;
	gatehouse/http) port=$GATEHOUSE_HTTP_PORT ;;
	gatehouse/tls) port=$GATEHOUSE_TLS_PORT ;;
	esac
	if [[ $2 == tls ]]; then echo "https://127.0.0.1:$port$REQ_PATH"; else echo "http://127.0.0.1:$port$REQ_PATH"; fi
}
server_of() { # TARGET -> name in PID_OF
	case $1 in direct) echo upstream ;; nginx) echo proxy ;; gatehouse) echo gatehouse ;; esac
}

# ------------------------------------------------------------ pre-flight ----
# Each target must answer 200 with the upstream's body before it is measured;
# a TLS target must speak TLS 1.3 (the negotiated cipher is reported).
declare -A SKIP=() NOTE=()
for target in "${ALL_TARGETS[@]}"; do
	if [[ $target == gatehouse && -n $GATEHOUSE_STATUS ]]; then
		for tr in "${ALL_TRANSPORTS[@]}"; do SKIP[$target/$tr]=$GATEHOUSE_STATUS; done
		continue
	fi
	for tr in "${ALL_TRANSPORTS[@]}"; do
		url=$(url_of "$target" "$tr")
		code=$(curl -ks -o "$WORK/preflight.body" -w '%{http_code}' --max-time 5 "${HEADER_ARGS[@]}" "$url" || true)
		if [[ $code != 200 ]]; then
			SKIP[$target/$tr]="failed: pre-flight GET $url answered ${code:-nothing}, not 200"
		elif [[ $(<"$WORK/preflight.body") != "$BODY" ]]; then
			SKIP[$target/$tr]="failed: pre-flight GET $url answered 200 with another body than the upstream's"
		fi
		if [[ -n ${SKIP[$target/$tr]:-} ]]; then
			warn "$target/$tr ${SKIP[$target/$tr]}"
			continue
		fi
		if [[ $tr == tls ]]; then
			hostport=${url#https://}
			hostport=${hostport%%/*}
			hs=$(openssl s_client -connect "$hostport" </dev/null 2>/dev/null |
				awk '/^New, /{ sub(/^New, /, ""); gsub(/, Cipher is /, " "); print; exit }' || true)
			NOTE[$target/$tr]=${hs:-unknown}
			[[ $hs == TLSv1.3* ]] || warn "$target/tls negotiated '${hs:-nothing}', not TLS 1.3"
		fi
	done
done

# ------------------------------------------------------------------ runs ----
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
if ((WRITE_RESULTS)); then
	RUN_DIR="$OUT_DIR/$STAMP"
	mkdir -p "$RUN_DIR"
else
	RUN_DIR="$WORK/results"
	mkdir -p "$RUN_DIR"
fi
CSV="$RUN_DIR/results.csv"
echo "round,target,transport,requests,duration_s,rps,p50_ms,p90_ms,p99_ms,max_ms,errors,non2xx,server_cpu_pct,upstream_cpu_pct,wrk_cpu_pct,other_cpu_pct,steal_pct" >"$CSV"

declare -A R_RPS=() R_P50=() R_P99=() R_ERR=() R_SRV=() R_UP=() R_WRK=() R_OTHER=()

wrk_cmd() { # DURATION URL
	WRK=(wrk -t "$THREADS" -c "$CONNECTIONS" -d "$1" --latency -s "$LOAD_DIR/report.lua")
	WRK+=("${HEADER_ARGS[@]}" "$2")
	((PIN)) && WRK=(taskset -c "$LOAD_CPUS" "${WRK[@]}")
	return 0
}
# Children's user+system CPU seconds of this shell so far, into CHILD_CPU_S.
# bash's 'times' must run in this shell (a $(...) subshell has its own
# children), hence the file.
children_cpu_s() {
	times >"$WORK/times"
	CHILD_CPU_S=$(awk 'NR == 2 {
		t = 0
		for (i = 1; i <= 2; i++) { split($i, a, "m"); sub(/s$/, "", a[2]); t += a[1] * 60 + a[2] }
		printf "%.3f\n", t
	}' "$WORK/times")
}
# run_wrk OUTFILE : run "${WRK[@]}" appending to OUTFILE; sets WRK_RC. wrk runs
# in the background and the shell waits for it, so that Ctrl-C reaches the
# trap at once (wrk itself catches SIGINT and exits 0, which would make bash
# ignore the signal if wrk were a foreground command); the trap stops it.
WRK_PID=""
run_wrk() {
	WRK_RC=0
	"${WRK[@]}" >>"$1" 2>&1 &
	WRK_PID=$!
	wait "$WRK_PID" || WRK_RC=$?
	WRK_PID=""
}

# measure ROUND TARGET TRANSPORT
measure() {
	local round=$1 target=$2 tr=$3 url raw server srv_pid up_pid
	url=$(url_of "$target" "$tr")
	raw="$RUN_DIR/wrk-$target-$tr-r$round.txt"
	server=$(server_of "$target")
	srv_pid=${PID_OF[$server]}
	up_pid=${PID_OF[upstream]}
	if ((WAIT_QUIET > 0)); then
		local busy deadline=$((SECONDS + WAIT_QUIET))
		while busy=$(machine_busy_pct 1) && ((busy > QUIET_PCT)); do
			if ((SECONDS >= deadline)); then
				warn "still ${busy}% background load after waiting ${WAIT_QUIET}s; measuring anyway"
				break
			fi
		done
	fi
	if ((WARMUP_S > 0)); then
		wrk_cmd "$WARMUP" "$url"
		echo "# warm-up: ${WRK[*]}" >"$raw"
		run_wrk "$raw"
	else
		: >"$raw"
	fi
	wrk_cmd "$DURATION" "$url"
	echo "# measurement: ${WRK[*]}" >>"$raw"
	local s0 u0 ct0 cb0 cs0 t0 t1 s1 u1 ct1 cb1 cs1 w0 w1 rc
	s0=$(proc_ticks "$srv_pid")
	u0=$(proc_ticks "$up_pid")
	read -r ct0 cb0 cs0 < <(cpu_jiffies)
	t0=$(date +%s%N)
	children_cpu_s
	w0=$CHILD_CPU_S
	run_wrk "$raw"
	rc=$WRK_RC
	children_cpu_s
	w1=$CHILD_CPU_S
	t1=$(date +%s%N)
	s1=$(proc_ticks "$srv_pid")
	u1=$(proc_ticks "$up_pid")
	read -r ct1 cb1 cs1 < <(cpu_jiffies)
	if ((rc != 0)); then
		if ((rc >= 128)); then exit "$rc"; fi
		warn "wrk exited with $rc for $target/$tr (see $raw)"
	fi
	local line
	line=$(awk '/^# measurement/ { m = 1 } m && /^LOADBENCH / { l = $0 } END { print l }' "$raw")
	if ! kill -0 "$srv_pid" 2>/dev/null || ! kill -0 "$up_pid" 2>/dev/null; then
		warn "$server or the upstream exited during $target/$tr; last lines of its log:"
		tail -n 20 "$WORK/$server.log" >&2 || true
		SKIP[$target/$tr]="failed: $server exited during the run (round $round)"
		return 0
	fi
	if [[ -z $line ]]; then
		warn "no result from wrk for $target/$tr; output:"
		tail -n 20 "$raw" >&2
		SKIP[$target/$tr]="failed: wrk gave no result (round $round)"
		return 0
	fi
	# One awk does all the arithmetic; prints the CSV row.
	local row
	row=$(awk -v line="$line" -v wrk_s="$w0 $w1" -v round="$round" -v target="$target" -v tr="$tr" \
		-v ds="$((s1 - s0))" -v du="$((u1 - u0))" -v tck="$CLK_TCK" -v wall_ns="$((t1 - t0))" \
		-v dct="$((ct1 - ct0))" -v dcb="$((cb1 - cb0))" -v dcs="$((cs1 - cs0))" -v direct="$([[ $target == direct ]] && echo 1 || echo 0)" '
		function kv(s, key,   n, i, a, b) { n = split(s, a, " "); for (i = 1; i <= n; i++) { split(a[i], b, "="); if (b[1] == key) return b[2] } return 0 }
		BEGIN {
			req = kv(line, "requests"); dur = kv(line, "duration_us") / 1e6
			wall = wall_ns / 1e9
			errs = kv(line, "err_connect") + kv(line, "err_read") + kv(line, "err_write") + kv(line, "err_timeout")
			split(wrk_s, w, " "); wrkcpu = (w[2] - w[1]) / wall * 100
			srv = ds / tck / wall * 100
			up = du / tck / wall * 100
			steal = dct > 0 ? dcs / dct * 100 : 0
			# CPU of everything else on the machine (other users, builds), % of one CPU
			other = dcb / tck / wall * 100 - srv - (direct ? 0 : up) - wrkcpu
			if (other < 0) other = 0
			# the upstream column is empty for "direct", where it is the server
			printf "%d,%s,%s,%d,%.3f,%.1f,%.3f,%.3f,%.3f,%.3f,%d,%d,%.0f,%s,%.0f,%.0f,%.1f\n", round, target, tr, req, dur, req / dur,
				kv(line, "p50_us") / 1000, kv(line, "p90_us") / 1000, kv(line, "p99_us") / 1000, kv(line, "max_us") / 1000,
				errs, kv(line, "err_status"), srv, direct ? "" : sprintf("%.0f", up), wrkcpu, other, steal
		}')
	echo "$row" >>"$CSV"
	local -a c
	IFS=, read -ra c <<<"$row"
	local k="$target/$tr"
	R_RPS[$k]+="${c[5]} "
	R_P50[$k]+="${c[6]} "
	R_P99[$k]+="${c[8]} "
	R_ERR[$k]=$((${R_ERR[$k]:-0} + c[10] + c[11]))
	R_SRV[$k]+="${c[12]} "
	R_UP[$k]+="${c[13]} "
	R_WRK[$k]+="${c[14]} "
	R_OTHER[$k]+="${c[15]} "
	printf '    %-9s %-4s %10s req/s  p50 %7s ms  p99 %7s ms  cpu: server %s%%, wrk %s%%, other %s%%%s\n' \
		"$target" "$tr" "${c[5]}" "${c[6]}" "${c[8]}" "${c[12]}" "${c[14]}" "${c[15]}" \
		"$( ((c[10] + c[11] > 0)) && echo "  ERRORS: ${c[10]} socket, ${c[11]} non-2xx")" >&2
}

per_run=$((DURATION_S + WARMUP_S))
n_runs=0
for target in "${ALL_TARGETS[@]}"; do
	for tr in "${ALL_TRANSPORTS[@]}"; do [[ -z ${SKIP[$target/$tr]:-} ]] && n_runs=$((n_runs + 1)); done
done
log "wrk -t$THREADS -c$CONNECTIONS -d$DURATION (warm-up $WARMUP)${TOKEN:+ with an Authorization header}; $n_runs rows x $ROUNDS round(s) x ${per_run}s = ~$((n_runs * ROUNDS * per_run))s"

BACKGROUND=$(machine_busy_pct 1)
if ((BACKGROUND > 20)); then
	warn "the machine is busy before the benchmark (${BACKGROUND}% of one CPU used by other processes); numbers will be noisy"
else
	log "background load before the benchmark: ${BACKGROUND}% of one CPU"
fi

for ((round = 1; round <= ROUNDS; round++)); do
	((ROUNDS > 1)) && log "round $round/$ROUNDS"
	# Odd rounds go direct, nginx, gatehouse; even rounds the other way round,
	# so that an order effect (warm caches, a neighbour starting up) does not
	# always favour the same proxy.
	order=("${ALL_TARGETS[@]}")
	if ((round % 2 == 0)); then
		order=()
		for ((i = ${#ALL_TARGETS[@]} - 1; i >= 0; i--)); do order+=("${ALL_TARGETS[i]}"); done
	fi
	for tr in "${ALL_TRANSPORTS[@]}"; do
		for target in "${order[@]}"; do
			[[ -n ${SKIP[$target/$tr]:-} ]] && continue
			measure "$round" "$target" "$tr"
		done
	done
done

# --------------------------------------------------------------- report ----
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

gh_ver="-"
[[ -n ${WANT[gatehouse]:-} && -x $GATEHOUSE_BIN ]] && gh_ver="$GATEHOUSE_BIN ($(date -u -r "$GATEHOUSE_BIN" +%Y-%m-%dT%H:%MZ))"
git_rev=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(git -C "$REPO_ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]] && git_rev+="-dirty"

{
	echo
	echo "gatehouse load benchmark, $STAMP, git $git_rev"
	echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency (warm-up $WARMUP), GET $REQ_PATH, ${#BODY}-byte body${TOKEN:+, Authorization: Bearer}; route auth=$AUTH"
	echo "placement: $PLACEMENT; nginx worker_processes $PROXY_WORKERS, gatehouse TOKIO_WORKER_THREADS $( ((PIN)) && echo "$PROXY_WORKERS" || echo "unset")"
	echo "nginx $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'); $(wrk --version 2>&1 | head -n 1 | awk '{print $1, $2}'); gatehouse $gh_ver"
	((ROUNDS > 1)) && echo "median of $ROUNDS interleaved rounds"
	echo "background load before the run: ${BACKGROUND}% of one CPU"
	echo
	echo "cpu columns: % of one CPU over the measurement; srv = the server under test, up = the upstream,"
	echo "other = everything else on the machine (should be ~0; high = a noisy neighbour, distrust the row)"
	echo
	printf '%-10s %-5s %12s %10s %10s %7s %6s %6s %6s %7s  %s\n' target proto "req/s" "p50 ms" "p99 ms" "srv cpu" "up" "wrk" other errors notes
	for tr in "${ALL_TRANSPORTS[@]}"; do
		for target in "${ALL_TARGETS[@]}"; do
			k="$target/$tr"
			if [[ -n ${SKIP[$k]:-} && -z ${R_RPS[$k]:-} ]]; then
				printf '%-10s %-5s %12s %10s %10s %7s %6s %6s %6s %7s  %s\n' "$target" "$tr" - - - - - - - - "${SKIP[$k]}"
				continue
			fi
			# shellcheck disable=SC2086 # word splitting of the per-round lists is intended
			{
				rps=$(median ${R_RPS[$k]})
				p50=$(median ${R_P50[$k]})
				p99=$(median ${R_P99[$k]})
				srv=$(median ${R_SRV[$k]})
				up=$(median ${R_UP[$k]})
				wrkc=$(median ${R_WRK[$k]})
				other=$(median ${R_OTHER[$k]})
			}
			[[ -z $up ]] && up="="
			[[ $up != "=" ]] && up=$(printf '%.0f%%' "$up")
			printf '%-10s %-5s %12.0f %10.2f %10.2f %6.0f%% %6s %5.0f%% %5.0f%% %7s  %s\n' \
				"$target" "$tr" "$rps" "$p50" "$p99" "$srv" "$up" "$wrkc" "$other" "${R_ERR[$k]:-0}" "${NOTE[$k]:-}${SKIP[$k]:+ ${SKIP[$k]}}"
			printf -v "MED_RPS_${target}_$tr" '%s' "$rps"
			printf -v "MED_P99_${target}_$tr" '%s' "$p99"
			printf -v "MED_P50_${target}_$tr" '%s' "$p50"
		done
	done
	echo
	if [[ -n ${WANT[gatehouse]:-} && -n ${WANT[nginx]:-} ]]; then
		for tr in "${ALL_TRANSPORTS[@]}"; do
			g="MED_RPS_gatehouse_$tr" n="MED_RPS_nginx_$tr" gp="MED_P99_gatehouse_$tr" np="MED_P99_nginx_$tr"
			if [[ -n ${!g:-} && -n ${!n:-} ]]; then
				echo "ratio gatehouse/nginx ($tr): $(ratio "${!g}" "${!n}")"
				printf 'p99 gatehouse/nginx (%s): %s   (gatehouse %.2f ms vs nginx %.2f ms; < 1 = gatehouse has the lower tail)\n' \
					"$tr" "$(ratio "${!gp}" "${!np}")" "${!gp}" "${!np}"
			else
				why=${SKIP[gatehouse/$tr]:-${SKIP[nginx/$tr]:-not measured}}
				echo "ratio gatehouse/nginx ($tr): n/a ($why)"
			fi
		done
	fi
	echo "(ratio = gatehouse req/s / nginx req/s, same core and worker count; 1.00 = as fast as nginx)"
} | tee "$RUN_DIR/summary.txt"

# JSON next to the CSV (no jq needed).
if ((WRITE_RESULTS)); then
	cp "$WORK"/proxy/nginx.conf "$RUN_DIR/proxy.nginx.conf" 2>/dev/null || true
	cp "$WORK"/upstream/nginx.conf "$RUN_DIR/upstream.nginx.conf" 2>/dev/null || true
	[[ -f $WORK/gatehouse.toml ]] && cp "$WORK/gatehouse.toml" "$RUN_DIR/gatehouse.toml"
	awk -F, -v stamp="$STAMP" -v git="$git_rev" -v dur="$DURATION" -v conns="$CONNECTIONS" -v threads="$THREADS" \
		-v placement="$PLACEMENT" -v auth="$AUTH" '
		NR == 1 { for (i = 1; i <= NF; i++) h[i] = $i; next }
		{
			row = "    {"
			for (i = 1; i <= NF; i++) {
				v = ($i == "") ? "null" : ($i ~ /^-?[0-9.]+$/) ? $i : "\"" $i "\""
				row = row (i > 1 ? ", " : "") "\"" h[i] "\": " v
			}
			rows[++n] = row "}"
		}
		END {
			printf "{\n  \"stamp\": \"%s\", \"git\": \"%s\", \"duration\": \"%s\", \"connections\": %d, \"threads\": %d,\n", stamp, git, dur, conns, threads
			printf "  \"placement\": \"%s\", \"auth\": \"%s\",\n  \"runs\": [\n", placement, auth
			for (i = 1; i <= n; i++) printf "%s%s\n", rows[i], (i < n ? "," : "")
			printf "  ]\n}\n"
		}' "$CSV" >"$RUN_DIR/results.json"
	ln -sfn "$STAMP" "$OUT_DIR/latest"
	log "raw wrk output, configs, results.csv and results.json in $RUN_DIR"
fi

# Exit 1 when something that was meant to run did not (a --no-build skip is fine).
for k in "${!SKIP[@]}"; do
	[[ ${SKIP[$k]} == failed:* ]] && exit 1
done
exit 0
