#!/usr/bin/env bash
# Wayang beside its peers in one run, on this machine, through the peers' own driver.
#
#   bash bench/compare.sh                 # REPS=3 (Prefect once: its server start is ~12 s)
#   REPS=1 bash bench/compare.sh
#
# Needs the peers installed as ../shared/bench/peers/README.md says (setup_peers.sh: venvs under
# /tmp/peers) and a copy of that folder at $PEERS_BENCH (default /tmp/peers/bench). Results go to
# $OUT (default /tmp/peers/bench/results/compare.jsonl); summarize with the peers' summarize.py.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${PEERS_DIR:-/tmp/peers}
BENCH=${PEERS_BENCH:-$PEERS/bench}
REPS=${REPS:-3}
OUT=${OUT:-$BENCH/results/compare.jsonl}
WPY=$ROOT/.venv/bin/python
DPY=$PEERS/dbos-venv/bin/python
PPY=$PEERS/prefect-venv/bin/python
CPY=$PEERS/celery-venv/bin/python
cd "$BENCH"
rb() { python3 run_bench.py --reps "$1" --timeout 420 --out "$OUT" "${@:2}"; }
W="$ROOT/bench/wayang_bench.py"

rb "$REPS" --label wayang-import --python "$WPY" --code 'import wayang.cli.main'
rb "$REPS" --label wayang-trivial --python "$WPY" -- "$W" --workload trivial
# The whole `wayang run` command, fresh process, fresh store each time: the start-up figure.
rb "$REPS" --label wayang-cli-run-trivial --python "$WPY" --code "import sys, tempfile
from wayang.cli.main import main
sys.exit(main(['--store', tempfile.mkdtemp() + '/w.db', 'run', '$ROOT/bench/trivial/workflow.toml', '--json']))"
rb "$REPS" --label wayang-chain --python "$WPY" -- "$W" --workload chain --n 500
rb "$REPS" --label wayang-chain-async --python "$WPY" --env BENCH_FN=noop_async -- "$W" --workload chain --n 500
rb "$REPS" --label wayang-fanout --python "$WPY" -- "$W" --workload fanout --n 1000
rb "$REPS" --label wayang-many --python "$WPY" -- "$W" --workload many --n 200
rb "$REPS" --label wayang-shell --python "$WPY" -- "$W" --workload shell --n 200

rb "$REPS" --label dbos-sqlite-trivial --python "$DPY" -- bench_dbos.py --backend sqlite --workload trivial
rb "$REPS" --label dbos-sqlite-chain --python "$DPY" -- bench_dbos.py --backend sqlite --workload chain --n 500
rb "$REPS" --label dbos-sqlite-fanout-queue --python "$DPY" -- bench_dbos.py --backend sqlite --workload fanout --n 1000 --fanout-mode queue
rb "$REPS" --label dbos-sqlite-fanout-gather --python "$DPY" -- bench_dbos.py --backend sqlite --workload fanout --n 1000 --fanout-mode gather
rb "$REPS" --label dbos-sqlite-many-start --python "$DPY" -- bench_dbos.py --backend sqlite --workload many --n 200 --many-mode start

rb 1 --label prefect-sqlite-trivial --python "$PPY" -- bench_prefect.py --backend sqlite --workload trivial
rb 1 --label prefect-sqlite-chain --python "$PPY" -- bench_prefect.py --backend sqlite --workload chain --n 500
rb 1 --label prefect-sqlite-fanout-map --python "$PPY" -- bench_prefect.py --backend sqlite --workload fanout --n 1000

rb "$REPS" --label celery-chain-client --python "$CPY" -- bench_celery.py --workload chain --n 500 --chain-mode client
rb "$REPS" --label celery-fanout-group --python "$CPY" -- bench_celery.py --workload fanout --n 1000
rb "$REPS" --label celery-many --python "$CPY" -- bench_celery.py --workload many --n 200
