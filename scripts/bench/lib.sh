# Shared by the benchmarks that run the Release daemon between the two
# simulators (bench-catalogue, bench-stock). Source it after setting NAME (the
# script's name, for messages and the build folder) and cd to the repository.
PY=/usr/bin/python3
die() { echo "$NAME: $*" >&2; exit 1; }
note() { echo "$NAME: $*" >&2; }
"$PY" -c 'import lxml' 2>/dev/null || die "$PY has no lxml (apt-get install python3-lxml)"

# The gateway binary: GW_BIN, or a Release build in build/$NAME.
build_gateway() {
  if [ -n "${GW_BIN:-}" ]; then
    GW=$GW_BIN
  else
    note "building Release (build/$NAME)"
    cmake -S . -B "build/$NAME" -DCMAKE_BUILD_TYPE=Release -DGW_TESTS=OFF >/dev/null
    cmake --build "build/$NAME" -j2 --target gateway >/dev/null
    GW=$PWD/build/$NAME/gateway
  fi
  [ -x "$GW" ] || die "no gateway binary at $GW"
}

TMP=$(mktemp -d "/var/tmp/gw-$NAME.XXXXXX")
PIDS=()
stop_pid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  if [ "${KEEP_TMP:-0}" = 1 ]; then note "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # $1 file, $2 pid
  for _ in $(seq 300); do [ -s "$1" ] && return 0; kill -0 "$2" 2>/dev/null || break; sleep 0.1; done
  die "a simulator did not start: $(tail -5 "$1.log" 2>/dev/null)"
}
REALM=4620816365000000007
IDENT=bench-ident
SECRET=bench-secret-$RANDOM$RANDOM
CID=bench-client
CSECRET=bench-client-secret

# Both simulators, on free ports: $QBO and $MPLUS.
start_simulators() {
  "$PY" tests/sim/qbo_sim.py --port 0 --realm "$REALM" --client-id "$CID" --client-secret "$CSECRET" \
    --port-file "$TMP/qbo.port" >/dev/null 2>"$TMP/qbo.port.log" &
  PIDS+=($!); wait_port "$TMP/qbo.port" "${PIDS[-1]}"
  "$PY" tests/sim/mplus_sim.py --port 0 --ident "$IDENT" --secret "$SECRET" \
    --port-file "$TMP/mplus.port" >/dev/null 2>"$TMP/mplus.port.log" &
  PIDS+=($!); wait_port "$TMP/mplus.port" "${PIDS[-1]}"
  QBO="http://127.0.0.1:$(cat "$TMP/qbo.port")"
  MPLUS="http://127.0.0.1:$(cat "$TMP/mplus.port")"
  post "$QBO/_sim/config" '{"rate_per_sec": 100000, "rate_per_min": 10000000, "max_concurrent": 1000}'
  for code in 5 7 9; do
    post "$QBO/_sim/entity" "{\"realm\":\"$REALM\",\"entity\":\"TaxCode\",\"object\":{\"Id\":\"$code\",\"Name\":\"BTW $code\"}}"
  done
}
post() { curl -sf -X POST -H 'Content-Type: application/json' -d "$2" "$1" >/dev/null || die "POST $1 failed"; }

# $TMP/gateway.ini for a products connection; $1: more [connection.bench] keys.
write_config() {
  local pub
  pub=$(free_port)
  cat > "$TMP/gateway.ini" <<CONF
[server]
listen = 127.0.0.1:$pub
admin_listen =
[storage]
path = $TMP/store
[quickbooks]
client_id = $CID
client_secret = $CSECRET
verifier_token = bench-verifier
api_base = $QBO
oauth_token_url = $QBO/oauth2/v1/tokens/bearer
oauth_authorize_url = $QBO/connect/oauth2
cdc_interval_s = 0
rate_per_sec = 10000
rate_per_min = 600000
max_concurrent = 64
batch_items = ${BATCH_ITEMS:-30}
batch_per_min = 600000
[dispatch]
max_in_flight = 64
max_in_flight_per_connection = 64
[log]
level = info
[connection.bench]
realm_id = $REALM
mplus_url = $MPLUS/
mplus_ident = $IDENT
mplus_secret = $SECRET
mplus_poll_interval_s = 1
mplus_page_size = ${PAGE:-1000}
mplus_backfill = true
default_country = NL
sales_tax_codes = */1:7, */2:5, */3:9
products_income_accounts = *:79
products_expense_accounts = *:80
products_asset_accounts = *:81
$1
CONF
  "$GW" -c "$TMP/gateway.ini" check-config >/dev/null ||
    die "config rejected: $("$GW" -c "$TMP/gateway.ini" check-config 2>&1 | tail -3)"
  local refresh
  refresh=$(curl -sf -X POST -d "{\"realm\":\"$REALM\"}" "$QBO/_sim/token" |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["refresh_token"])')
  "$GW" -c "$TMP/gateway.ini" tokens bench --refresh-token "$refresh" >/dev/null
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
field_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }
api_requests() { # QuickBooks API requests so far; $1: more filters (&method=POST)
  curl -sf "$QBO/_sim/requests/count?path_contains=/v3/company/${1:-}" |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["count"])'
}
# Events in a final state (done, skipped, dead) once none is queued or
# running, from the daemon's status; 0 while any is.
final_events() {
  "$GW" -c "$TMP/gateway.ini" status --json 2>/dev/null | "$PY" -c '
import json, sys
ev = json.load(sys.stdin)["events"]
busy = sum(ev.get(s, 0) for s in ("pending", "in_flight", "retrying"))
print(0 if busy else sum(ev.get(s, 0) for s in ("done", "skipped", "dead")))' 2>/dev/null || echo 0
}
ANON_MAX=0
# Waits until $1 events are final, sampling RSS; $2 names the phase.
wait_final() {
  local deadline=$(( $(date +%s) + 1200 )) done anon
  while :; do
    kill -0 "$GW_PID" 2>/dev/null || die "the daemon died: $(tail -3 "$TMP/gateway.log")"
    anon=$(field_kb "$GW_PID" RssAnon); [ "${anon:-0}" -gt "$ANON_MAX" ] && ANON_MAX=$anon
    done=$(final_events)
    [ "$done" -ge "$1" ] && return 0
    [ "$(date +%s)" -lt "$deadline" ] || die "$2: only $done of $1 events final after 1200 s"
    sleep 0.5
  done
}

# The daemon, in the background: $GW_PID; with PERF_OUT, perf records it.
start_gateway() {
  "$GW" -c "$TMP/gateway.ini" serve 2>"$TMP/gateway.log" &
  GW_PID=$!
  PIDS+=($GW_PID)
  PERF_PID=""
  if [ -n "${PERF_OUT:-}" ]; then
    perf record -F "${PERF_FREQ:-999}" ${PERF_CALLGRAPH:--g} -o "$PERF_OUT" -p "$GW_PID" 2>"$TMP/perf.log" &
    PERF_PID=$!
  fi
}
