#!/usr/bin/env bash
# The real training runs behind the README's training figures: the pooled platform base (DeepPCB with its
# templates + synthetic metal parts), evaluated on held-out DeepPCB boards; NEU-DET fine-tuned from that base
# against NEU-DET from scratch with the same epochs and hyperparameters; DeepPCB fine-tuned from the base at
# 640 px. Needs ../shared/datasets.
#   LINEQA_HOME=/tmp/lqa-real nice benchmarks/train_real.sh            # CPU (hours); add DEVICE=0 on a GPU
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/.venv/bin:$PATH"
: "${LINEQA_HOME:?set LINEQA_HOME to an empty folder for the experiment}"
shared=../shared/datasets
device="${DEVICE:-auto}"
base_epochs="${BASE_EPOCHS:-25}"
neu_epochs="${NEU_EPOCHS:-20}"
stamp() { echo "==> $(date -u +%H:%M:%S) $*"; }

stamp "datasets"
lineqa datasets import pcb/deeppcb "$shared/deeppcb/PCBData" --templates
lineqa datasets split pcb/deeppcb --ratios train=0.7,val=0.15,test=0.15 --seed 0 >/dev/null
lineqa datasets snapshot pcb/deeppcb --note "DeepPCB trainval with templates, split by board group"
lineqa datasets synth "$LINEQA_HOME/synth-metal" --surface metal --count 300 --seed 7
lineqa datasets import synth/metal "$LINEQA_HOME/synth-metal"
lineqa datasets snapshot synth/metal --note "synthetic brushed-metal parts"
lineqa datasets contribute pcb/deeppcb@latest --by "experiment"
lineqa datasets contribute synth/metal@latest --by "experiment"
lineqa datasets pool
lineqa datasets import neu/neu-det "$shared/neu-det" --format voc
lineqa datasets split neu/neu-det --ratios train=0.7,val=0.15,test=0.15 --seed 0 --group-by name >/dev/null
lineqa datasets snapshot neu/neu-det --note "NEU-DET 1..250 of each class"

stamp "platform base on pool@1 ($base_epochs epochs)"
lineqa train --dataset pool@1 --base yolo11n.yaml --name pool-base --epochs "$base_epochs" --imgsz 320 \
  --batch 16 --workers 2 --device "$device"
for base in pool scratch; do
  stamp "NEU-DET from $base ($neu_epochs epochs)"
  source="yolo11n.yaml"
  [ "$base" = pool ] && source="$LINEQA_HOME/runs/pool-base/weights/best.pt"
  # The same hyperparameters for both (lr0 pinned): only the starting weights differ.
  lineqa train --dataset neu/neu-det@1 --base "$source" --name "neu-from-$base" --epochs "$neu_epochs" \
    --imgsz 224 --batch 16 --workers 2 --device "$device" --set lr0=0.003
done
stamp "evaluations on the held-out splits"
lineqa evaluate --run pool-base --dataset pcb/deeppcb@1 --split test
lineqa evaluate --run neu-from-pool
lineqa evaluate --run neu-from-scratch
stamp "DeepPCB fine-tuned from the platform base at 640 px"
lineqa models publish pool-base --name platform-base
lineqa train --dataset pcb/deeppcb@1 --base platform-base@1 --name deeppcb-from-base --epochs 10 --imgsz 640 \
  --batch 16 --workers 2 --device "$device"
lineqa evaluate --run deeppcb-from-base
stamp "done"
