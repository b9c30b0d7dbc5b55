# PostgreSQL and Redis on loopback for one test run (issue 23): sourced by .ci/run, or by hand:
#
#   . .ci/services.sh && services_start     # exports ANTISPAM_TEST_POSTGRES_URL, ANTISPAM_TEST_REDIS_URL
#   ...run tests...
#   services_stop                            # .ci/run does this in its EXIT trap
#
# Both come from Debian packages (apt-get install postgresql redis-server); nothing is downloaded
# here. Each gets a temporary data folder and a free port, listens on 127.0.0.1 only, and keeps
# nothing after the run. PostgreSQL refuses to run as root, so as root it runs as the `postgres`
# user the package creates. Trust authentication: loopback only, a throwaway cluster.
# A server that cannot start leaves its variable unset; the tests that need it then skip and say why.

_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

_as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

services_start() {
  _SERVICES_DIR=$(mktemp -d /tmp/antispam-services.XXXXXX)
  chmod 755 "$_SERVICES_DIR"
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$bin" ] && [ -x "$bin/pg_ctl" ]; then
    local port
    port=$(_free_port)
    mkdir -p "$_SERVICES_DIR/pg"
    [ "$(id -u)" = 0 ] && chown postgres "$_SERVICES_DIR/pg"
    if _as_postgres "$bin/initdb" -D "$_SERVICES_DIR/pg/data" -U postgres --auth=trust -E UTF8 --no-locale >"$_SERVICES_DIR/pg/initdb.log" 2>&1 \
       && _as_postgres "$bin/pg_ctl" -D "$_SERVICES_DIR/pg/data" -l "$_SERVICES_DIR/pg/server.log" -w -t 60 \
            -o "-p $port -k $_SERVICES_DIR/pg -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null; then
      _SERVICES_PG="$bin/pg_ctl -D $_SERVICES_DIR/pg/data"
      export ANTISPAM_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$port/postgres"
      echo "PostgreSQL ($bin) on 127.0.0.1:$port"
    else
      echo "warning: PostgreSQL did not start (logs in $_SERVICES_DIR/pg); its tests will be skipped"
      cat "$_SERVICES_DIR/pg/"*.log 2>/dev/null | tail -n 20 || true
    fi
  else
    echo "warning: no PostgreSQL server (apt-get install postgresql); its tests will be skipped"
  fi
  if command -v redis-server >/dev/null 2>&1; then
    local rport
    rport=$(_free_port)
    if redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
         --pidfile "$_SERVICES_DIR/redis.pid" --logfile "$_SERVICES_DIR/redis.log" --dir "$_SERVICES_DIR" \
       && for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done \
       && redis-cli -p "$rport" ping >/dev/null 2>&1; then
      _SERVICES_REDIS_PORT=$rport
      export ANTISPAM_TEST_REDIS_URL="redis://127.0.0.1:$rport/0"
      echo "Redis on 127.0.0.1:$rport"
    else
      echo "warning: Redis did not start; its tests will be skipped"
    fi
  else
    echo "warning: no redis-server (apt-get install redis-server); its tests will be skipped"
  fi
}

services_stop() {
  if [ -n "${_SERVICES_PG:-}" ]; then
    _as_postgres $_SERVICES_PG -m immediate stop >/dev/null 2>&1 || true
    _SERVICES_PG=""
  fi
  if [ -n "${_SERVICES_REDIS_PORT:-}" ]; then
    redis-cli -p "$_SERVICES_REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    _SERVICES_REDIS_PORT=""
  fi
  if [ -n "${_SERVICES_DIR:-}" ]; then
    rm -rf "$_SERVICES_DIR"
    _SERVICES_DIR=""
  fi
  unset ANTISPAM_TEST_POSTGRES_URL ANTISPAM_TEST_REDIS_URL
}
