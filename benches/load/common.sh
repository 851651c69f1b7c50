# shellcheck shell=bash disable=SC2034  # sourced; its variables are for the scripts that source it
# Helpers shared by benches/ab.sh and benches/instructions.sh (sourced, not run; needs LOAD set
# to this folder): free ports, template filling, the throwaway keys, the gatehouse config, the
# command line of each kind of proxy under test.
# benches/load.sh keeps its own, richer versions.

BODY="hello from the gatehouse load-bench upstream, 64 bytes of body.."
USER_DIRECTIVE="# not root"
if [[ $(id -u) -eq 0 ]]; then
	USER_DIRECTIVE="user root;"
fi

# A free TCP port on 127.0.0.1.
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# fill TEMPLATE NAME=VALUE...: the template with each @NAME@ replaced.
fill() {
	local t kv
	t=$(<"$1")
	shift
	for kv in "$@"; do t=${t//@${kv%%=*}@/${kv#*=}}; done
	printf '%s\n' "$t"
}

# make_keys DIR: a self-signed P-256 certificate for 127.0.0.1 and an Ed25519 signing key.
make_keys() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1/key.pem" \
		-out "$1/cert.pem" -days 2 -subj /CN=127.0.0.1 >/dev/null 2>&1
	openssl genpkey -algorithm ed25519 -out "$1/signing.pem" >/dev/null 2>&1
}

# gatehouse_config HTTP_PORT TLS_PORT ADMIN_PORT UPSTREAM_PORT: the load-bench config on stdout,
# with AUTH and ROUTE_EXTRA from the environment.
gatehouse_config() {
	fill "$LOAD/gatehouse.toml.in" "GATEHOUSE_HTTP_PORT=$1" "GATEHOUSE_TLS_PORT=$2" \
		"GATEHOUSE_ADMIN_PORT=$3" "UPSTREAM_HTTP_PORT=$4" "AUTH=${AUTH:-none}" LOG_LEVEL=warn \
		"ROUTE_EXTRA=${ROUTE_EXTRA:-}"
}

# server_command DIR BINARY HTTP_PORT TLS_PORT ADMIN_PORT UPSTREAM_PORT: sets SERVER_COMMAND to
# the command that runs BINARY as a proxy of the upstream on 127.0.0.1, writing its config into
# DIR (which holds cert.pem and key.pem). BINARY's name says what it is: `nginx` is load.sh's
# nginx reverse proxy (one process), `hyper_floor` the example of that name, and anything else a
# gatehouse build.
server_command() {
	local dir=$1 bin=$2
	case $(basename "$bin") in
	nginx)
		fill "$LOAD/proxy.nginx.conf.in" "PREFIX=$dir" WORKERS=1 "USER_DIRECTIVE=$USER_DIRECTIVE" \
			"CERT=$dir/cert.pem" "KEY=$dir/key.pem" "UPSTREAM_HTTP_PORT=$6" "NGINX_HTTP_PORT=$3" \
			"NGINX_TLS_PORT=$4" >"$dir/nginx.conf"
		SERVER_COMMAND=("$bin" -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" \
			-g 'daemon off; master_process off;')
		;;
	hyper_floor)
		SERVER_COMMAND=("$bin" "127.0.0.1:$3" "127.0.0.1:$6" "127.0.0.1:$4" "$dir/cert.pem" "$dir/key.pem")
		;;
	*)
		gatehouse_config "$3" "$4" "$5" "$6" >"$dir/gatehouse.toml"
		SERVER_COMMAND=("$bin" serve --config "$dir/gatehouse.toml")
		;;
	esac
}
