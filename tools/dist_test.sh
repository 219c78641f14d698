#!/usr/bin/env bash
# Distributed testing with torchrun.
#   bash tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py args...]
# NNODES, NODE_RANK, MASTER_ADDR, PORT as for dist_train.sh.
set -euo pipefail
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
  --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29501}" \
  --nproc_per_node="$NPROC" \
  tools/test.py "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
