#!/usr/bin/env bash
# The main job, end to end on the built-in synthetic data (`make demo`):
# set-up if needed, build the data set, train the small Adder FCOS on CPU
# (progress in the log), evaluate it (bbox mAP), export a slim checkpoint
# and draw its predictions on a few val images.
#   DEMO_CONFIG   config (default: the synthetic Adder FCOS)
#   DEMO_WORK     work dir (default: work_dirs/demo)
#   DEMO_EPOCHS   override max_epochs (default: the config's)
#   DEMO_DATA     data set folder (default: data/synthetic)
#   DEMO_SEED     training seed (default 1, so that runs on one machine with
#                 the same threads repeat; empty: mmengine draws one)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
CONFIG=${DEMO_CONFIG:-configs/synthetic/adder-fcos_adder-r18-quarter_adder-rpafpn_20e_synthetic-coco.py}
WORK=${DEMO_WORK:-work_dirs/demo}
DATA=${DEMO_DATA:-data/synthetic}
t0=$(date +%s)

PYTHON=$PY bash tools/install.sh
$PY tools/make_dataset.py --out "$DATA" --if-stale

opts=(train_dataloader.dataset.data_root="$DATA/" val_dataloader.dataset.data_root="$DATA/"
      test_dataloader.dataset.data_root="$DATA/"
      val_evaluator.ann_file="$DATA/annotations/instances_val.json"
      test_evaluator.ann_file="$DATA/annotations/instances_val.json")
if [ -n "${DEMO_EPOCHS:-}" ]; then
  opts+=(train_cfg.max_epochs="$DEMO_EPOCHS")
fi
train_opts=()
SEED=${DEMO_SEED-1}
if [ -n "$SEED" ]; then
  train_opts+=(randomness.seed="$SEED")
fi
# No validation inside training: tools/test.py evaluates the final
# checkpoint right after (the same numbers, computed once).
$PY tools/train.py "$CONFIG" --work-dir "$WORK" --cfg-options "${opts[@]}" "${train_opts[@]}" train_cfg.val_begin=100000
CKPT=$(cat "$WORK/last_checkpoint")
$PY tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK/test" --cfg-options "${opts[@]}" 2>&1 | tee "$WORK/test.log"
$PY tools/export.py "$CKPT" "$WORK/export/adder_fcos.pth"
EXPORTED=$(ls -t "$WORK"/export/adder_fcos-*.pth | head -1)
mkdir -p "$WORK/samples"
for id in $(tail -n 4 "$DATA/ImageSets/Main/val.txt"); do cp "$DATA/JPEGImages/$id.jpg" "$WORK/samples/"; done
$PY tools/demo.py "$WORK/samples" "$CONFIG" "$EXPORTED" --out "$WORK/predictions"
echo "== demo done in $(( $(date +%s) - t0 )) s"
grep -E "bbox_mAP" "$WORK/test.log" | tail -1 || true
echo "checkpoint: $EXPORTED; drawings: $WORK/predictions/"
