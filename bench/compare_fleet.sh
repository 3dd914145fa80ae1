#!/usr/bin/env bash
# Wayang on PostgreSQL (the engine alone; an engine and 1, 2, 4 `wayang worker` processes, taking
# tasks or, with --drive, whole runs handed off) beside
# DBOS on the same PostgreSQL, in one run, through the peers' own driver (issue 7).
#
#   bash bench/compare_fleet.sh                 # REPS=3
#   REPS=1 ONLY=wayang bash bench/compare_fleet.sh
#   python3 bench/fleet_table.py /tmp/peers/bench/results/fleet.jsonl
#
# Needs the peers installed as ../shared/bench/peers/README.md says (setup_peers.sh: venvs under
# /tmp/peers, PostgreSQL on 127.0.0.1:5432 with trust auth) and a copy of that folder at
# $PEERS_BENCH (default /tmp/peers/bench; the driver writes its logs beside itself). N values as
# the peers' run_all.sh (N_CHAIN, N_FANOUT, N_MANY). Wayang's runs use a fresh schema each in the
# database wayang_bench (created on first use); DBOS's a fresh database each, as its script does.
#
# The repetitions are interleaved: each round runs every configuration once, Wayang's and DBOS's
# of a workload one after the other, so both meet the same machine (a test suite starting
# halfway through moves both, not one). ONLY: all | wayang | dbos | spin | sweep | claim | pinned.
# sweep (not part of all): 1 and 2 workers on CPU-bound steps of SWEEP_MS milliseconds each, with
# SWEEP_SLOTS slots, to show where a second worker process pays (fleet_table.py's last table).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${PEERS_DIR:-/tmp/peers}
BENCH=${PEERS_BENCH:-$PEERS/bench}
REPS=${REPS:-3}
N_CHAIN=${N_CHAIN:-500}
N_FANOUT=${N_FANOUT:-1000}
N_MANY=${N_MANY:-200}
# Each worker's --slots. No-op steps wait on nothing, so a worker keeps as many going as DBOS's
# queue does (no limit there): 64. Steps of 5 ms of CPU: 32, which both 1 and 2 workers finish
# faster than 8 (each round trip to the store carries more tasks; ONLY=sweep shows both).
SLOTS=${SLOTS:-64}
SPIN_SLOTS=${SPIN_SLOTS:-32}
SWEEP_MS=${SWEEP_MS:-2 5 10 20}
SWEEP_SLOTS=${SWEEP_SLOTS:-8 32}
ONLY=${ONLY:-all}
OUT=${OUT:-$BENCH/results/fleet.jsonl}
WPY=$ROOT/.venv/bin/python
DPY=$PEERS/dbos-venv/bin/python
F="$ROOT/bench/fleet_bench.py"
C="$ROOT/bench/claim_bench.py"
cd "$BENCH"
want() { [ "$ONLY" = all ] || [ "$ONLY" = "$1" ]; }

# One configuration a line: label, interpreter, then run_bench.py's arguments.
plan() {
  local w n k mode
  for w in chain fanout many; do
    case $w in chain) n=$N_CHAIN ;; fanout) n=$N_FANOUT ;; many) n=$N_MANY ;; esac
    if want wayang; then
      echo "wayang-pg-$w-engine $WPY -- $F --workload $w --n $n"
      for k in 1 2 4; do
        echo "wayang-pg-$w-workers$k $WPY -- $F --workload $w --n $n --workers $k --slots $SLOTS"
      done
      # runs handed off to the workers, which drive them (--drive; runtime/hand_off.py)
      for k in 1 2 4; do
        echo "wayang-pg-$w-drivers$k $WPY -- $F --workload $w --n $n --workers $k --slots $SLOTS --drive"
      done
    fi
    if want dbos; then  # as the peers' run_all.sh runs DBOS on postgres
      case $w in
        chain) echo "dbos-pg-chain $DPY -- bench_dbos.py --backend postgres --workload chain --n $n" ;;
        fanout) for mode in queue start gather; do
            echo "dbos-pg-fanout-$mode $DPY -- bench_dbos.py --backend postgres --workload fanout --n $n --fanout-mode $mode"
          done ;;
        many) for mode in start queue; do
            echo "dbos-pg-many-$mode $DPY -- bench_dbos.py --backend postgres --workload many --n $n --many-mode $mode"
          done ;;
      esac
    fi
  done
  if want spin; then  # CPU-bound steps (5 ms of CPU each): what more worker processes are for
    echo "wayang-pg-spin-engine $WPY --env BENCH_FN=spin -- $F --workload fanout --n $N_FANOUT"
    for k in 1 2 4; do
      echo "wayang-pg-spin-workers$k $WPY --env BENCH_FN=spin -- $F --workload fanout --n $N_FANOUT --workers $k --slots $SPIN_SLOTS"
    done
    # one run handed off: the steps its driver's slots would start late go to the other drivers
    for k in 1 2 4; do
      echo "wayang-pg-spin-drivers$k $WPY --env BENCH_FN=spin -- $F --workload fanout --n $N_FANOUT --workers $k --slots $SPIN_SLOTS --drive"
    done
  fi
  if [ "$ONLY" = pinned ]; then  # each process pinned to a CPU (--pin: wayang worker --cpus)
    for w in chain fanout many; do
      case $w in chain) n=$N_CHAIN ;; fanout) n=$N_FANOUT ;; many) n=$N_MANY ;; esac
      echo "wayang-pg-$w-engine-pinned $WPY -- $F --workload $w --n $n --pin"
      for k in 1 2; do
        echo "wayang-pg-$w-workers$k-pinned $WPY -- $F --workload $w --n $n --workers $k --slots $SLOTS --pin"
      done
      for k in 1 2 4; do
        echo "wayang-pg-$w-drivers$k-pinned $WPY -- $F --workload $w --n $n --workers $k --slots $SLOTS --drive --pin"
      done
      case $w in  # DBOS beside them, in its headline mode and the mode it is fastest in
        chain) echo "dbos-pg-chain $DPY -- bench_dbos.py --backend postgres --workload chain --n $n" ;;
        fanout) for mode in queue gather; do
            echo "dbos-pg-fanout-$mode $DPY -- bench_dbos.py --backend postgres --workload fanout --n $n --fanout-mode $mode"
          done ;;
        many) echo "dbos-pg-many-start $DPY -- bench_dbos.py --backend postgres --workload many --n $n --many-mode start" ;;
      esac
    done
  fi
  if [ "$ONLY" = sweep ]; then
    local ms slots
    for ms in $SWEEP_MS; do
      for slots in $SWEEP_SLOTS; do
        for k in 1 2; do
          echo "wayang-pg-sweep-${ms}ms-slots$slots-workers$k $WPY --env BENCH_FN=spin --env BENCH_SPIN_MS=$ms -- $F --workload fanout --n $N_FANOUT --workers $k --slots $slots"
        done
      done
    done
  fi
}

for round in $(seq "$REPS"); do
  echo "== round $round of $REPS"
  plan | while read -r label python args; do
    # shellcheck disable=SC2086  # args: plain words, split on purpose
    python3 run_bench.py --reps 1 --timeout 900 --out "$OUT" --label "$label" \
      --python "$python" $args < /dev/null
  done
done

if want claim; then  # claim latency with 10,000 tasks queued for workers (one run each)
  cb() { python3 run_bench.py --reps 1 --timeout 900 --out "$OUT" --label "$1" --python "$WPY" -- "$C" "${@:2}" < /dev/null; }
  cb wayang-pg-claim-b1-c1 --batch 1 --claimers 1
  cb wayang-pg-claim-b8-c1 --batch 8 --claimers 1 --claims 500
  cb wayang-pg-claim-b1-c2 --batch 1 --claimers 2
  cb wayang-pg-claim-b1-c4 --batch 1 --claimers 4 --claims 1000
  cb wayang-pg-claim-b1-c1-h100k --batch 1 --claimers 1 --history 100000
  cb wayang-pg-claim-b1-c1-nosync --batch 1 --claimers 1 --synchronous-commit off
fi
