#!/usr/bin/env bash
# A mixed soak of gatehouse, watching its resident memory (RSS): for --duration (default 10
# minutes), at the same time,
#   - proxying: wrk over TLS on a bearer route (a PAT, 8 keep-alive connections),
#   - token grants: log in (the login form, a real password check), authorize, redeem the code
#     with PKCE, refresh five times, use the access token; in a loop,
#   - large bodies both ways: two clients each upload --mib MiB (POST through the route) and
#     download --mib MiB (GET of a file the upstream serves), in a loop.
# RSS is sampled every --sample seconds. The target: flat within ±5% from the end of the
# first minute (warm-up: pools, caches, allocator arenas) to the end. The table also shows RSS
# idle before the load and 20 s after it stopped (what the process keeps after large bodies).
#
#   bash benches/soak.sh [--duration 600] [--mib 16] [--sample 10] [--gatehouse BIN]
#                        [--gatehouse-env 'NAME=VALUE ...']
#
# Needs nginx, wrk, python3, openssl, curl. See benches/README.md.
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true
DURATION=600
MIB=16
SAMPLE=10
WARM=60
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GATEHOUSE=$ROOT/target/dist/gatehouse
GATEHOUSE_ENV=()
while (($#)); do
	case $1 in
	--duration) DURATION=$2; shift 2 ;;
	--mib) MIB=$2; shift 2 ;;
	--sample) SAMPLE=$2; shift 2 ;;
	--gatehouse) GATEHOUSE=$2; shift 2 ;;
	--gatehouse-env) read -ra GATEHOUSE_ENV <<<"$2"; shift 2 ;;
	*) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done
((WARM < DURATION)) || WARM=$((DURATION / 5))
for tool in nginx wrk python3 openssl curl; do
	command -v "$tool" >/dev/null || { echo "soak.sh: $tool is missing (apt-get install -y $tool)" >&2; exit 1; }
done
[[ -x $GATEHOUSE ]] || (cd "$ROOT" && cargo build --profile dist)
LOAD=$ROOT/benches/load
MEM=$ROOT/benches/memory
SOAK=$ROOT/benches/soak
source "$LOAD/common.sh"

W=$(mktemp -d /tmp/gatehouse-soak.XXXX)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	sleep 0.3
	rm -rf "$W"
}
trap cleanup EXIT
log() { printf '[soak] %s\n' "$*" >&2; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
wait_port() {
	local _
	for _ in $(seq 300); do
		curl -sk -o /dev/null "$1" && return 0
		sleep 0.1
	done
	echo "soak.sh: nothing answers $1" >&2
	return 1
}

make_keys "$W"
UP=$(port) GP=$(port) GA=$(port)
mkdir -p "$W/upstream/html" "$W/gatehouse"
head -c "$((MIB << 20))" /dev/urandom >"$W/upstream/html/big"
cat >"$W/upstream/nginx.conf" <<EOF
$USER_DIRECTIVE
worker_processes 1;
pid $W/upstream/nginx.pid;
error_log $W/upstream/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $W/upstream/client_body;
    proxy_temp_path $W/upstream/proxy;
    fastcgi_temp_path $W/upstream/fastcgi;
    uwsgi_temp_path $W/upstream/uwsgi;
    scgi_temp_path $W/upstream/scgi;
    keepalive_timeout 300s;
    keepalive_requests 10000000;
    client_max_body_size 0;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$UP backlog=4096;
        location = /big { root $W/upstream/html; }
        location / { return 200 "$BODY"; }
    }
}
EOF
nginx -e "$W/upstream/error.log" -p "$W/upstream" -c "$W/upstream/nginx.conf" -g 'daemon off;' &
PIDS+=($!)
wait_port "http://127.0.0.1:$UP/"

PASSWORD=soak-password-$RANDOM$RANDOM
HASH=$(printf '%s' "$PASSWORD" | "$GATEHOUSE" hash-password)
SECRET=soak-client-secret-$RANDOM$RANDOM$RANDOM
CALLBACK=https://client.example/callback
cp "$W"/*.pem "$W/gatehouse/"
EXTRA="
[[users]]
name = \"soak\"
password_hash = \"$HASH\"
max_scope = \"READ\"

[[apps]]
client_id = \"soak\"
client_secret = \"$SECRET\"
display_name = \"soak\"
allowed_callback_urls = [\"$CALLBACK\"]
scopes = [\"READ\"]
skip_consent = true
"
fill "$MEM/gatehouse.toml.in" "TLS_PORT=$GP" "ADMIN_PORT=$GA" "UPSTREAM_PORT=$UP" "EXTRA=$EXTRA" \
	>"$W/gatehouse/gatehouse.toml"
(cd "$W/gatehouse" && exec env "${GATEHOUSE_ENV[@]}" "$GATEHOUSE" serve --config gatehouse.toml \
	>"$W/gatehouse/log" 2>&1) &
G_PID=$!
PIDS+=("$G_PID")
wait_port "http://127.0.0.1:$GA/readyz"
python3 "$MEM/seed_pats.py" "$W/gatehouse/gatehouse.db" 1 "$W/pat"
PAT=$(<"$W/pat")
code=$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $PAT" "https://127.0.0.1:$GP/")
[[ $code == 200 ]] || { echo "soak.sh: gatehouse answers $code" >&2; tail "$W/gatehouse/log" >&2; exit 1; }
sleep 2
IDLE=$(rss_kib "$G_PID")
log "gatehouse idle: $IDLE KiB; soaking for ${DURATION}s"

wrk -t 1 -c 8 -d "${DURATION}s" -H "Authorization: Bearer $PAT" "https://127.0.0.1:$GP/" >"$W/wrk.out" 2>&1 &
PIDS+=($!)
WRK_PID=$!
python3 "$SOAK/driver.py" grants 127.0.0.1 "$GP" "$DURATION" soak "$PASSWORD" soak "$SECRET" "$CALLBACK" \
	>"$W/grants.out" 2>"$W/grants.err" &
GRANTS_PID=$!
PIDS+=("$GRANTS_PID")
BODY_PIDS=()
for i in 1 2; do
	python3 "$SOAK/driver.py" bodies 127.0.0.1 "$GP" "$DURATION" "$PAT" "$MIB" \
		>"$W/bodies$i.out" 2>"$W/bodies$i.err" &
	BODY_PIDS+=($!)
	PIDS+=($!)
done

SAMPLES=()
start=$SECONDS
while ((SECONDS - start < DURATION)); do
	sleep "$SAMPLE"
	t=$((SECONDS - start))
	r=$(rss_kib "$G_PID")
	SAMPLES+=("$t:$r")
	log "t=${t}s RSS $r KiB"
done
rc=0
wait "$WRK_PID" || rc=1
wait "$GRANTS_PID" || rc=1
for p in "${BODY_PIDS[@]}"; do wait "$p" || rc=1; done
sleep 20
AFTER=$(rss_kib "$G_PID")

{
	echo "gatehouse soak, ${DURATION}s: proxying (wrk -c8 over TLS, a PAT), token grants (login, code, 5 refreshes), ${MIB} MiB bodies both ways (2 clients)"
	echo
	printf '%8s %12s\n' "t (s)" "RSS (MiB)"
	printf '%8s %12.1f\n' idle "$(awk -v k="$IDLE" 'BEGIN { print k / 1024 }')"
	for s in "${SAMPLES[@]}"; do printf '%8s %12.1f\n' "${s%%:*}" "$(awk -v k="${s#*:}" 'BEGIN { print k / 1024 }')"; done
	printf '%8s %12.1f\n' "end+20" "$(awk -v k="$AFTER" 'BEGIN { print k / 1024 }')"
	echo
	printf '%s\n' "${SAMPLES[@]}" | awk -F: -v warm="$WARM" -v idle="$IDLE" -v after="$AFTER" '
		$1 >= warm { if (!n++) first = $2; if ($2 < min || min == "") min = $2; if ($2 > max) max = $2 }
		END {
			if (!n) { print "no sample after the warm-up"; exit }
			lo = (min - first) / first * 100; hi = (max - first) / first * 100
			printf "RSS from %d s on: first %.1f MiB, min %.1f, max %.1f: %+.1f%% / %+.1f%% of the first (target within +-5%%): %s\n",
				warm, first / 1024, min / 1024, max / 1024, lo, hi, (lo >= -5 && hi <= 5) ? "met" : "NOT met"
			printf "held 20 s after the load stopped: %.1f MiB (idle before: %.1f MiB)\n", after / 1024, idle / 1024
		}'
	echo
	echo "work done: $(cat "$W/grants.out") | $(cat "$W"/bodies*.out | tr '\n' ' ')| wrk: $(awk '/requests in/ { print $1, "requests" } /Non-2xx|Socket errors/ { print }' "$W/wrk.out" | tr '\n' ' ')"
	echo "machine: $(nproc) CPUs; $(uptime | sed 's/^ *//')"
	echo "gatehouse: $GATEHOUSE ($(date -u -r "$GATEHOUSE" +%Y-%m-%dT%H:%MZ))${GATEHOUSE_ENV[*]:+ with ${GATEHOUSE_ENV[*]}}"
} | tee "$W/summary"
if ((rc)); then
	echo "soak.sh: a load client failed; its errors:" >&2
	tail -n 5 "$W"/*.err "$W/wrk.out" >&2
fi
exit "$rc"
