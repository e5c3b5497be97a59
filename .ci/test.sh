#!/usr/bin/env bash
# Runs every test of zmq-proxy, installing what the tests need when missing:
# Debian's python3-zmq (libzmq peers for the interop tests), etcd-server
# (real etcd processes for the cluster tests), redis-server and
# python3-redis (oslo.messaging's Redis matchmaker, and peers that read it),
# systemd (systemd-analyze verify on the units in deploy/), logrotate
# (deploy/zmq-proxy.logrotate) and prometheus (promtool check rules and
# promtool test rules on deploy/prometheus/).
#
#   .ci/test.sh            vet, unit + integration + end-to-end tests with -race,
#                          a short fuzz run of the codecs, one pass of each benchmark
#   FUZZTIME=200000x .ci/test.sh   fuzz longer (FUZZTIME=60s works too; see below)
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
/usr/bin/python3 -c 'import zmq' 2>/dev/null || need+=(python3-zmq)
command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || need+=(etcd-server)
[ -x /usr/bin/redis-server ] || need+=(redis-server)
/usr/bin/python3 -c 'import redis' 2>/dev/null || need+=(python3-redis)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v logrotate >/dev/null 2>&1 || [ -x /usr/sbin/logrotate ] || need+=(logrotate)
[ -x /usr/bin/promtool ] || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  if ! $SUDO apt-get install -y -q "${need[@]}" >/dev/null; then
    $SUDO apt-get update -q >/dev/null
    $SUDO apt-get install -y -q "${need[@]}" >/dev/null
  fi
fi

echo "== gofmt, go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 15m ./...

# A count, not a duration: with a duration, Go's fuzzing coordinator can
# fail a target with "context deadline exceeded" when the time runs out
# while a worker is busy (go.dev/issue/75804; seen here on FuzzTrie, with
# no failing input), and a slow machine then fails CI for nothing.
FUZZTIME=${FUZZTIME:-5000x}
echo "== fuzz ($FUZZTIME each)"
for pkg in ./transport/ ./transport/security/ ./rpc/ ./internal/oslo/; do
  for target in $(go test -list 'Fuzz.*' "$pkg" | grep '^Fuzz'); do
    go test -run XXX -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg"
  done
done

echo "== benchmarks (one pass, to keep them running)"
go test -run XXX -bench . -benchtime 1x ./...
