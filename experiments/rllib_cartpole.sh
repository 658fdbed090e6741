#!/usr/bin/env bash
# Leap over RLlib PPO on the CartPole family: meta-training with Leap's loss term off and on,
# then transfer of both and of a random initialization to the two held-out tasks (paired seeds).
#
#   experiments/rllib_cartpole.sh            # ~25 min wall on 2 cores
#   QUICK=1 experiments/rllib_cartpole.sh    # the same commands at toy scale (about 2 minutes)
#
# Writes runs/rllib-cartpole/{leap,leap-loss-term,eval} (OUT=... changes the folder). A folder
# that exists stops the script: remove it or pick another OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
CFG=experiments/rllib_cartpole.yaml
if [[ "${QUICK:-0}" == 1 ]]; then
    OUT=${OUT:-runs/rllib-cartpole-quick}
    SCALE=(--set meta.meta_steps=2 --set meta.meta_batch_size=2 --set rllib.steps_per_task=1024)
    EVAL_STEPS=1024
    SEEDS=2
else
    OUT=${OUT:-runs/rllib-cartpole}
    SCALE=()                # the config: 15 meta_steps x 8 tasks x 20,000 env_steps = 2.4M
    EVAL_STEPS=20000        # per run; 2 held-out tasks x 3 methods x 8 seeds
    SEEDS=8
fi
COMMON=(--config "$CFG" --set logging.logdir="$OUT" "${SCALE[@]}")

"$PY" -m leap_ray train "${COMMON[@]}" --set logging.run_name=leap
"$PY" -m leap_ray train "${COMMON[@]}" --set logging.run_name=leap-loss-term --set meta.loss_term=true
"$PY" -m leap_ray evaluate --init "leap:$OUT/leap" --baseline "leap-loss-term:$OUT/leap-loss-term" \
    --baseline random --steps "$EVAL_STEPS" --seeds "$SEEDS" --out "$OUT/eval" \
    --set logging.progress=false
echo "results: $OUT/eval/summary.md, $OUT/eval/transfer.png, $OUT/eval/curves.csv"
