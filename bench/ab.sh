#!/usr/bin/env bash
# A/B in one run: this working tree's service (A) against revision REV's (B), alternately
# A B A B …, each round a `bench/run.sh` of the same scenarios on the same machine minutes
# apart, so a refactor is measured against its parent rather than against figures of another
# day. REV is built from a git worktree into its own target folder (target/ab/<sha>, kept
# for the next A/B against it).
#
#   bench/ab.sh <rev>                       e.g. bench/ab.sh HEAD~3
#   ROUNDS=3 SCENARIOS="get floor" bench/ab.sh 863bb0e
#
# Prints each round's req/s, the service's CPU time per request (user + system over the
# measured seconds: steadier than req/s, which the client and databases on the same cores
# blur) and memory per side (peak VmHWM, VmHWM 1 s after start, RssAnon and RssFile after
# the load: the heap against mapped code and data), then the medians. Needs
# what run.sh needs (the machine's PostgreSQL and Redis); the machine's limits are not measured
# (LIMITS=0). SEED (run.sh's 10,000 by default) seeds each side's database first.
set -euo pipefail
cd "$(dirname "$0")/.."
REV=${1:?usage: bench/ab.sh <rev>}
ROUNDS=${ROUNDS:-2}
export SCENARIOS=${SCENARIOS:-create get floor}
export RUNS=1 BACKLOG=0 LIMITS=0
SHA=$(git rev-parse --short "$REV")
ROOT=$(pwd)
TREE="$ROOT/target/ab/src-$SHA"
TARGET="$ROOT/target/ab/$SHA"

if [ ! -d "$TREE" ]; then
    git worktree add --detach "$TREE" "$SHA" >/dev/null
fi
echo "== building $SHA (B) into $TARGET"
(cd "$TREE" && CARGO_TARGET_DIR="$TARGET" cargo build --release -p customer-service)
echo "== building the working tree (A)"
cargo build --release -p customer-service -p loadgen
bash bench/link-order.sh --check ||
    echo "WARNING: A is linked with a stale order file: its memory figures overstate it (bench/link-order.sh)"
cp "${CARGO_TARGET_DIR:-target}/release/customer-service" "$ROOT/target/ab/A-customer-service"
A="$ROOT/target/ab/A-customer-service"
B="$TARGET/release/customer-service"
ls -l "$A" "$B" | awk '{print "binary", $5, "bytes", $NF}'

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
for round in $(seq 1 "$ROUNDS"); do
    for side in A B; do
        bin=$A; [ "$side" = B ] && bin=$B
        echo "== round $round, $side"
        SERVICE_BIN="$bin" bash bench/run.sh > "$OUT/$side.$round" 2>&1 || {
            cat "$OUT/$side.$round"; exit 1; }
        grep -E '^  [a-z]+ [0-9.]+ req/s|^cpu |^(peak|start) RSS|^end Rss' "$OUT/$side.$round"
    done
done

echo
echo "| figure | A (working tree) | B ($SHA) |"
echo "|---|---|---|"
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "–" }'; }
rounds() { # $1 side, $2 awk pattern, $3 field
    for f in "$OUT/$1".*; do awk "$2 {print \$$3}" "$f"; done
}
for scenario in $SCENARIOS; do
    a=$(rounds A "/^  $scenario [0-9]/" 2 | tr '\n' ' '); b=$(rounds B "/^  $scenario [0-9]/" 2 | tr '\n' ' ')
    echo "| $scenario req/s (rounds; median) | $a; $(echo $a | tr ' ' '\n' | median) | $b; $(echo $b | tr ' ' '\n' | median) |"
    a=$(rounds A "/^cpu $scenario /" 3 | tr '\n' ' '); b=$(rounds B "/^cpu $scenario /" 3 | tr '\n' ' ')
    echo "| $scenario service CPU µs/request (rounds; median) | $a; $(echo $a | tr ' ' '\n' | median) | $b; $(echo $b | tr ' ' '\n' | median) |"
done
for figure in "peak RSS" "start RSS" "end RssAnon" "end RssFile"; do
    a=$(rounds A "/^$figure/" 3 | tr '\n' ' '); b=$(rounds B "/^$figure/" 3 | tr '\n' ' ')
    echo "| $figure MB (rounds; median) | $a; $(echo $a | tr ' ' '\n' | median) | $b; $(echo $b | tr ' ' '\n' | median) |"
done
