#!/usr/bin/env bash
# Distributed training with PyTorch's own launcher (torchrun).
#   bash tools/dist_train.sh CONFIG NPROC [train.py args...]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT in the environment, e.g.
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash tools/dist_train.sh CONFIG 8
# Without GPUs the processes use the gloo backend on CPU.
set -euo pipefail
CONFIG=$1
NPROC=$2
shift 2
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
  --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
  --nproc_per_node="$NPROC" \
  tools/train.py "$CONFIG" --launcher pytorch "$@"
