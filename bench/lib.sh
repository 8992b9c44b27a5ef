# Helpers the benchmark scripts share; sourced from the repository's root (`. bench/lib.sh`).
# `record` and `cursor_at` use the sourcing script's OUT (its temp dir), R (its results)
# and PORT (the service's).

# The number after "$1 " in the text on stdin (`field p99` of a loadgen line).
field() { grep -o "$1 [0-9.]*" | head -n 1 | awk '{print $2}'; }

urlencode() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }

# record KEY: prints $OUT/KEY.out (a loadgen line) and stores KEY.rps, KEY.p50, KEY.p99 in R.
record() {
    local line; line=$(cat "$OUT/$1.out")
    echo "  $1: $line"
    R[$1.rps]=$(echo "$line" | field "connections,")
    R[$1.p50]=$(echo "$line" | field "p50")
    R[$1.p99]=$(echo "$line" | field "p99")
}

# The nextCursor of page PAGE (limit 10).
cursor_at() {
    curl -sf "http://127.0.0.1:$PORT/api/v1/customers?page=$1&limit=10" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["nextCursor"])'
}
