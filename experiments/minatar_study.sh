#!/usr/bin/env bash
# The MinAtar study of EXPERIMENTS.md (issue 24), staged and resumable; its decision rules are
# written there, before any run. Stages, each a command that resumes where it stopped:
#   1. sweep     Ray Tune grid on the pool side (validation: Seaquest?sticky=0.1&ramping=true)
#   2-4. meta-training at the chosen settings (leap), at the paper's (leap-paper), and Reptile,
#        with meta.seed 1 (never the sweep's) and every checkpoint kept (a quarter, a half, all)
#   5. finetune  multi-task finetuning with the same env_step budget
#   perturbed    the control: theta_0 moved as far as Leap moved each tensor, randomly (seconds)
#   6. eval      10 paired seeds on the held-out Breakout and SpaceInvaders, with videos
#   7. eval-quarter, eval-half: the chosen Leap at a quarter and a half of meta-training
#
#   experiments/minatar_study.sh            # the study (hours: see EXPERIMENTS.md)
#   QUICK=1 experiments/minatar_study.sh    # the same commands at toy scale (minutes)
#
# Finished stages are skipped (OUT/<stage>.done); OUT/stages.log has each stage's wall time.
# STAGES="finetune" runs only the stages it names (experiments/stages.sh); the record
# (experiments/study_report.py) is written by a run without STAGES once every stage is done.
# OUT defaults to ~/leap-ray-runs/minatar-study (outside the checkout, where a later resume on
# the same machine finds it). Needs pip install minatar (GPL-3.0, an optional extra).
set -euo pipefail

main() {
    cd "$(dirname "$0")/.."
    PY=${PY:-.venv/bin/python}
    CFG=configs/minatar.yaml
    VALIDATION='Seaquest?sticky=0.1&ramping=true'
    if [[ "${QUICK:-0}" == 1 ]]; then
        OUT=${OUT:-$HOME/leap-ray-runs/minatar-study-quick}
        SCALE=(--set meta.meta_steps=4 --set meta.meta_batch_size=2
               --set a2c.steps_per_task=2000 --set env.num_envs=8 --set meta.stream_every=10)
        SWEEP_SCALE=(--set meta.meta_steps=1)
        FINETUNE_STEPS=900          # 4 x 2 x 2,000 env_steps over 17 tasks, rounded down
        EVAL_STEPS=2000
        SEEDS=2
        TRANSFER_STEPS=2000
        RESULTS=$OUT/results        # toy numbers stay out of the checkout
    else
        OUT=${OUT:-$HOME/leap-ray-runs/minatar-study}
        SCALE=()                    # the config: 40 meta_steps x 8 tasks x 250,000 = 80M
        SWEEP_SCALE=(--set meta.meta_steps=10 --set a2c.steps_per_task=100000)  # 8M a trial
        FINETUNE_STEPS=4705882      # 80M env_steps over the 17 pool tasks of each run
        EVAL_STEPS=250000           # the transfer budget of the decision rules
        SEEDS=10
        TRANSFER_STEPS=250000
        RESULTS=experiments/results/minatar
    fi
    mkdir -p "$OUT"
    COMMON=(--config "$CFG" --set logging.logdir="$OUT" "${SCALE[@]}")
    FINAL=(--set meta.seed=1 --set logging.keep_checkpoints=1000
           --set "env.games=$(pool_without_validation)")

    stage sweep resumable "$OUT/sweep" "$PY" -m leap_ray sweep --config "$CFG" "${SCALE[@]}" \
        "${SWEEP_SCALE[@]}" --grid meta.lr=0.0003,0.001,0.003 --grid meta.loss_term=true,false \
        --validation "$VALIDATION" --transfer-steps "$TRANSFER_STEPS" --seeds 2 \
        --out "$OUT/sweep"
    local chosen steps=0 at
    CHOSEN=()
    if [[ -e "$OUT/sweep.done" ]]; then
        chosen=$(chosen_settings)  # its own line, so that a failure stops the script
        read -r -a CHOSEN <<< "$chosen"
        echo "chosen settings: ${CHOSEN[*]}" | tee -a "$OUT/stages.log"
    fi
    stage leap --after sweep train_stage leap "${FINAL[@]}" "${CHOSEN[@]}"
    stage leap-paper train_stage leap-paper "${FINAL[@]}" --set meta.metric=energy \
        --set meta.loss_term=true --set meta.optimizer=adam --set meta.lr=0.01
    stage reptile --after sweep train_stage reptile "${FINAL[@]}" "${CHOSEN[@]}" \
        --set meta.algorithm=reptile
    stage finetune resumable "$OUT/finetune" "$PY" -m leap_ray finetune "${COMMON[@]}" \
        "${FINAL[@]}" --steps-per-game "$FINETUNE_STEPS" --out "$OUT/finetune"
    if [[ -e "$OUT/leap.done" ]]; then  # its meta_steps: the checkpoints of a quarter, a half, all
        steps=$("$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['config']['meta']['meta_steps'])" "$OUT/leap/meta.json")
    fi
    # --after leap: the run's newest checkpoint is its last, the one perturb takes
    stage perturbed --after leap "$PY" -m leap_ray perturb "$OUT/leap" --seed 0 \
        --out "$OUT/leap-perturbed"
    stage eval --after "leap leap-paper reptile finetune perturbed" resumable "$OUT/eval" \
        "$PY" -m leap_ray evaluate --init "leap:$OUT/leap" \
        --baseline "leap-paper:$OUT/leap-paper" --baseline "reptile:$OUT/reptile" \
        --baseline "finetune:$OUT/finetune" --baseline "perturbed:$OUT/leap-perturbed" \
        --baseline random --steps "$EVAL_STEPS" --seeds "$SEEDS" --video --out "$OUT/eval"
    for part in quarter half; do
        if [[ $part == quarter ]]; then at=$(( steps / 4 )); else at=$(( steps / 2 )); fi
        stage "eval-$part" --after leap resumable "$OUT/eval-$part" "$PY" -m leap_ray evaluate \
            --init "leap-$part:$OUT/leap/checkpoints/$(printf 'checkpoint-%06d.pt' "$at")" \
            --baseline random --steps "$EVAL_STEPS" --seeds "$SEEDS" --out "$OUT/eval-$part"
    done
    if [[ -z "${STAGES:-}" ]]; then  # every stage has run (a run with STAGES writes none)
        "$PY" experiments/study_report.py "$OUT" --methods leap leap-paper reptile \
            --evals eval eval-quarter eval-half --title "MinAtar study" \
            --results "$RESULTS"
    fi
}

# The pool's tasks less the validation task (a YAML list for --set env.games=...).
pool_without_validation() {
    "$PY" - "$CFG" "$VALIDATION" <<'PY'
import json, sys
from leap_ray.config import load_config
from leap_ray.suites import suite_for, training_games
cfg = load_config(sys.argv[1])
held = suite_for(cfg.env).resolve(sys.argv[2])
print(json.dumps([g for g in training_games(cfg.env) if g != held]))
PY
}

# The sweep's best row as --set arguments (its fields and values).
chosen_settings() {
    "$PY" - "$OUT/sweep/sweep.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
best = rows[0]  # sweep.csv is written best first
print(" ".join(f"--set {k}={v}" for k, v in best.items() if "." in k and not k.startswith("auc/")))
PY
}

source "$(dirname "${BASH_SOURCE[0]}")/stages.sh"

main "$@"
