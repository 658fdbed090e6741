#!/usr/bin/env bash
# The reduced Atari experiment of EXPERIMENTS.md ("Atari at reduced scale"): Leap vs Reptile vs
# multi-task finetuning vs a random initialization, meta-trained on 4 classic games, transferred
# to the held-out Breakout and SpaceInvaders with paired seeds: 9.6M env_steps, about 1 h 50 min
# on 2 cores (the whole box runs about 1,500 env_steps/s).
#
#   experiments/atari_reduced.sh            # the experiment
#   QUICK=1 experiments/atari_reduced.sh    # the same commands at toy scale (a few minutes)
#
# Stages resume: run the script again after a stop and finished stages are skipped (each writes
# OUT/<stage>.done), a meta-training stage continues from its last checkpoint, finetuning from
# its last finished game and evaluation from its last finished run. OUT/stages.log has the wall
# time of each stage. Writes runs/atari-reduced (runs/atari-reduced-quick with QUICK=1); OUT=...
# changes the folder; experiments/atari_report.py turns it into experiments/results/.
set -euo pipefail

main() {
    cd "$(dirname "$0")/.."
    PY=${PY:-.venv/bin/python}
    CFG=experiments/atari_reduced.yaml
    if [[ "${QUICK:-0}" == 1 ]]; then
        OUT=${OUT:-runs/atari-reduced-quick}
        SCALE=(--set meta.meta_steps=2 --set a2c.steps_per_task=2000 --set meta.stream_every=10)
        FINETUNE_STEPS=4000  # per game
        EVAL_STEPS=3000
        SEEDS=2
    else
        OUT=${OUT:-runs/atari-reduced}
        SCALE=()              # the config: 4 meta_steps x 4 tasks x 150,000 env_steps = 2.4M
        FINETUNE_STEPS=600000 # x 4 games = 2.4M env_steps, the meta-learners' budget
        EVAL_STEPS=100000     # per run: 2 held-out games x 4 methods x 3 seeds = 2.4M
        SEEDS=3
    fi
    mkdir -p "$OUT"
    COMMON=(--config "$CFG" --set logging.logdir="$OUT" "${SCALE[@]}")

    # 1. Leap (energy metric, loss term, stabilizer) and 2. Reptile: same tasks, seeds, meta-opt.
    stage leap train_stage leap
    stage reptile train_stage reptile --set meta.algorithm=reptile
    # 3. Multi-task finetuning: one encoder through the 4 games in turn, from the same theta_0
    #    (in-process, one learner: it gets both cores).
    stage finetune resumable "$OUT/finetune" "$PY" -m leap_ray finetune "${COMMON[@]}" \
        --set a2c.torch_threads=2 --steps-per-game "$FINETUNE_STEPS" --out "$OUT/finetune"
    # 4. Transfer to the held-out games (env.held_out), paired seeds 0..SEEDS-1.
    stage eval resumable "$OUT/eval" "$PY" -m leap_ray evaluate --init "leap:$OUT/leap" \
        --baseline random --baseline "reptile:$OUT/reptile" \
        --baseline "finetune:$OUT/finetune" --steps "$EVAL_STEPS" --seeds "$SEEDS" \
        --out "$OUT/eval"
    "$PY" experiments/atari_report.py "$OUT"
}

source "$(dirname "${BASH_SOURCE[0]}")/stages.sh"

main "$@"
exit
