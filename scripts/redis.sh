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
