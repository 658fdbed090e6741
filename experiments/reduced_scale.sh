#!/usr/bin/env bash
# The reduced-scale reproduction of EXPERIMENTS.md: Leap vs Reptile vs multi-task finetuning vs a
# random initialization, on held-out tasks of a CartPole family, through the same learner, Ray
# workers and parameter server as the Atari runs.
#
#   experiments/reduced_scale.sh            # the experiment: ~30 min wall, ~0.8 CPU-hours on 2 cores
#   QUICK=1 experiments/reduced_scale.sh    # the same commands at toy scale (about a minute)
#
# Writes runs/reduced/{leap,reptile,finetune,eval} (runs/reduced-quick with QUICK=1); OUT=...
# changes the folder. A folder that exists stops the script: remove it or pick another OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
CFG=experiments/cartpole_family.yaml
if [[ "${QUICK:-0}" == 1 ]]; then
    OUT=${OUT:-runs/reduced-quick}
    SCALE=(--set meta.meta_steps=2 --set meta.meta_batch_size=2 --set a2c.steps_per_task=2000)
    FINETUNE_STEPS=500      # per game
    EVAL_STEPS=2000
    SEEDS=2
else
    OUT=${OUT:-runs/reduced}
    SCALE=()                # the config: 30 meta_steps x 8 tasks x 25,000 env_steps = 6.0M
    FINETUNE_STEPS=750000   # x 8 games = 6.0M env_steps, the meta-learners' budget
    EVAL_STEPS=50000        # per run; 2 held-out tasks x 4 methods x 10 seeds = 4.0M
    SEEDS=10
fi
COMMON=(--config "$CFG" --set logging.logdir="$OUT" --set logging.progress=false "${SCALE[@]}")

# 1. Leap (energy metric) and 2. Reptile: identical settings, seeds and meta-optimizer.
"$PY" -m leap_ray train "${COMMON[@]}" --set logging.run_name=leap
"$PY" -m leap_ray train "${COMMON[@]}" --set logging.run_name=reptile --set meta.algorithm=reptile
# 3. Multi-task finetuning: one encoder through the 8 training tasks in turn (in-process).
"$PY" -m leap_ray finetune "${COMMON[@]}" --steps-per-game "$FINETUNE_STEPS" --out "$OUT/finetune"
# 4. Transfer to the 2 held-out tasks (env.held_out), paired seeds 0..SEEDS-1.
"$PY" -m leap_ray evaluate --init "leap:$OUT/leap" \
    --baseline random --baseline "reptile:$OUT/reptile" --baseline "finetune:$OUT/finetune" \
    --steps "$EVAL_STEPS" --seeds "$SEEDS" --out "$OUT/eval" --set logging.progress=false
echo "results: $OUT/eval/summary.md, $OUT/eval/transfer.png, $OUT/eval/curves.csv"
