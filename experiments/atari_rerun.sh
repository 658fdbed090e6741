#!/usr/bin/env bash
# The Atari rerun of EXPERIMENTS.md ("Atari again", issue 24), its decision rules written there
# before any run: Leap (the MinAtar sweep's learning rate, the loss term on the clipped gradient),
# Reptile, multi-task finetuning with the same env_step budget, the perturbed control and a
# random initialization, 5 paired seeds on the held-out Breakout and SpaceInvaders at 200k
# env_steps. Stages, with their wall times measured on 2 cores (EXPERIMENTS.md):
#   1. leap       64 learning processes of 150k env_steps (9.6M), ~2.3 h
#   2. reptile    the same tasks and seeds, ~2.3-2.5 h
#   perturbed     the control: theta_0 moved as far as Leap moved each tensor (seconds)
#   3. eval       4 methods (leap, reptile, perturbed, random) x 2 games x 5 seeds x 200k
#                 env_steps (8M), with videos, 1.6 h: the answer to "does Leap transfer" first
#   4. finetune   one encoder through the 25 pool games in turn, 384k env_steps each (9.6M),
#                 one process at ~1,050 env_steps/s: ~6 min a game, ~2.6 h
#   eval-finetune the same evaluation resumed with finetune added: its 10 runs (2M), the rest
#                 kept, ~0.4 h
#
#   experiments/atari_rerun.sh              # the experiment (about 9.5 hours)
#   QUICK=1 experiments/atari_rerun.sh      # the same commands at toy scale (minutes)
#   STAGES="finetune" experiments/atari_rerun.sh   # only the stages named (experiments/stages.sh)
#
# Finished stages are skipped (OUT/<stage>.done) and a stopped one resumes; OUT/stages.log has
# their wall times. OUT defaults to ~/leap-ray-runs/atari-rerun, outside the checkout, where a
# later resume on the same machine finds it; the record goes to experiments/results/atari_rerun.
set -euo pipefail

main() {
    cd "$(dirname "$0")/.."
    PY=${PY:-.venv/bin/python}
    CFG=experiments/atari_rerun.yaml
    if [[ "${QUICK:-0}" == 1 ]]; then
        OUT=${OUT:-$HOME/leap-ray-runs/atari-rerun-quick}
        SCALE=(--set meta.meta_steps=2 --set a2c.steps_per_task=1000 --set meta.stream_every=5)
        FINETUNE_STEPS=320    # 2 x 4 x 1,000 env_steps over 25 games
        EVAL_STEPS=2000
        SEEDS=2
        RESULTS=$OUT/results  # toy numbers stay out of the checkout
    else
        OUT=${OUT:-$HOME/leap-ray-runs/atari-rerun}
        SCALE=()              # the config: 16 meta_steps x 4 tasks x 150,000 = 9.6M
        FINETUNE_STEPS=384000 # x 25 games = 9.6M env_steps, the meta-learners' budget
        EVAL_STEPS=200000     # random learns both games by then (BENCHMARKS.md)
        SEEDS=5
        RESULTS=experiments/results/atari_rerun
    fi
    mkdir -p "$OUT"
    COMMON=(--config "$CFG" --set logging.logdir="$OUT" "${SCALE[@]}")

    stage leap train_stage leap
    stage reptile train_stage reptile --set meta.algorithm=reptile
    # --after leap: the run's newest checkpoint is its last, the one perturb takes
    stage perturbed --after leap "$PY" -m leap_ray perturb "$OUT/leap" --seed 0 \
        --out "$OUT/leap-perturbed"
    EVAL=("$PY" -m leap_ray evaluate --init "leap:$OUT/leap" --baseline "reptile:$OUT/reptile"
        --baseline "perturbed:$OUT/leap-perturbed" --baseline random --steps "$EVAL_STEPS"
        --seeds "$SEEDS" --video --out "$OUT/eval")
    stage eval --after "leap reptile perturbed" resumable "$OUT/eval" "${EVAL[@]}"
    stage finetune resumable "$OUT/finetune" "$PY" -m leap_ray finetune "${COMMON[@]}" \
        --set a2c.torch_threads=2 --steps-per-game "$FINETUNE_STEPS" --out "$OUT/finetune"
    # a resume may add a method: the finished runs of the other four are kept
    stage eval-finetune --after "eval finetune" "${EVAL[@]}" \
        --baseline "finetune:$OUT/finetune" --resume
    if [[ -z "${STAGES:-}" ]]; then  # every stage has run (a run with STAGES writes none)
        "$PY" experiments/study_report.py "$OUT" --methods leap reptile --evals eval \
            --title "Atari rerun" --every 2 --results "$RESULTS"
    fi
}

source "$(dirname "${BASH_SOURCE[0]}")/stages.sh"

main "$@"
