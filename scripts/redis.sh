# Makes Debian's redis-server available to the tests (sourced by test.sh). The tests start and stop their own
# servers on free loopback ports (tests/Parley.Server.Tests/Infrastructure/RedisServer.cs); nothing runs here.

ensure_redis() {
  if [ ! -x /usr/bin/redis-server ]; then
    echo "redis.sh: installing redis-server (Debian package)" >&2
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    local attempt
    for attempt in 1 2; do
      $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends redis-server >/dev/null && break
      [ "$attempt" -eq 2 ] && { echo "redis.sh: could not install redis-server" >&2; return 1; }
      sleep 3
    done
  fi
  # Installing the package may start a system service on 6379: the tests never use it.
  export PARLEY_TEST_REQUIRE_REDIS=1
}

# Stops redis-server processes that tests started and did not stop (a test whose clean-up failed, a test host that
# crashed): they would outlive the run and keep whatever descriptors they inherited, such as the caller's output.
# Only servers running in a test's own directory (parley-redis-*) are touched, never a system service.
stop_test_redis() {
  local pid dir
  for pid in $(pgrep -x redis-server 2>/dev/null); do
    dir=$(readlink "/proc/$pid/cwd" 2>/dev/null) || continue
    case $dir in
      */parley-redis-*)
        kill "$pid" 2>/dev/null && echo "redis.sh: stopped a redis-server a test left running (pid $pid)" >&2 ;;
    esac
  done
}
