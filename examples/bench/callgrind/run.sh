#!/bin/bash
# Instructions per request of cruddur-db-service, counted by callgrind:
#
#   DATABASE_URL=postgres://... examples/bench/callgrind/run.sh BINARY MODE OUT
#
# BINARY is a release build of the service (target/release/cruddur-db-service),
# MODE is `off` (CRUDDUR_METRICS=0, no traces), `metrics` (as it starts) or
# `traced` (metrics, and every request traced over OTLP to otlp_sink.py, a
# sink outside valgrind that answers each export 200 at once), or `sampled`
# (the same with one request in ten traced, parentbased_traceidratio 0.1;
# the client sends no traceparent). The service
# runs under valgrind; the client (client.py, 8 keep-alive connections) runs
# outside it. After a warm-up of 200 feed GETs and 200 posts, the counters
# are zeroed, 2000 `GET /api/activities/home` are counted (dump OUT.cg.1),
# then 2000 `POST /api/activities` (OUT.cg.2). Every thread of the process
# is counted: the runtime's, the database threads, the OTLP batch exporter.
# The database must be migrated and seeded (`cruddur-db setup`); each run
# adds 2200 posts to it. A URL over TCP with `sslmode=disable&gssencmode=disable`
# serves the feed on async connections (`CRUDDUR_ASYNC_PRIMARY=0`: on the
# database threads); any other TCP URL keeps it on the threads.
# Needs valgrind, python3 and curl.
set -eu
bin=$1; mode=$2; out=$3
here=$(cd "$(dirname "$0")" && pwd)
: "${DATABASE_URL:?set DATABASE_URL to a migrated, seeded database}"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
export CRUDDUR_BIND=127.0.0.1:$port NO_COLOR=1 RUST_LOG=info
unset OTEL_EXPORTER_OTLP_ENDPOINT OTEL_TRACES_SAMPLER OTEL_TRACES_SAMPLER_ARG CRUDDUR_METRICS
sinkpid=
case $mode in
  off) export CRUDDUR_METRICS=0 ;;
  metrics) ;;
  traced|sampled)
    if [ "$mode" = sampled ]; then
      export OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1
    fi
    sinkport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    python3 "$here/otlp_sink.py" "$sinkport" 2>"$out.sink" &
    sinkpid=$!
    export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$sinkport ;;
  *) echo "MODE is off, metrics, traced or sampled" >&2; exit 2 ;;
esac
rm -f "$out".cg*
valgrind --tool=callgrind --callgrind-out-file="$out.cg" "$bin" >"$out.log" 2>&1 &
vpid=$!
for _ in $(seq 600); do curl -sf "$base/api/health-check" >/dev/null && break; sleep 0.5; done
python3 "$here/client.py" "$base" get 200 8 >/dev/null
python3 "$here/client.py" "$base" post 200 8 >/dev/null
callgrind_control -z $vpid >/dev/null
echo "feed answered 200: $(python3 "$here/client.py" "$base" get 2000 8)"
callgrind_control -d feed $vpid >/dev/null
echo "posts answered 200: $(python3 "$here/client.py" "$base" post 2000 8)"
callgrind_control -d post $vpid >/dev/null
kill -TERM $vpid; wait $vpid || true
if [ -n "$sinkpid" ]; then kill "$sinkpid"; echo "OTLP exports: $(grep -c export "$out.sink")"; fi
for n in 1 2; do
  [ $n = 1 ] && what=feed || what=post
  total=$(callgrind_annotate "$out.cg.$n" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1; exit}')
  echo "$mode $what: $total instructions, $((total / 2000)) per request"
done
