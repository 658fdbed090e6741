# Shared by the staged experiment scripts (sourced, not run): `stage`, `train_stage` and
# `resumable`. They read OUT, PY and COMMON from the script that sources them.

# stage NAME [--after "A B"] COMMAND...: runs COMMAND unless OUT/NAME.done exists, or STAGES
# (names separated by spaces) is set and does not name it; logs its wall time. --after names
# the stages whose output COMMAND reads: it refuses to run before they are finished (an
# evaluation would otherwise read a meta-training run's newest, unfinished checkpoint). STAGES
# runs independent stages side by side on a machine with cores to spare, e.g. a finetune stage
# (one process) beside a meta-training one.
stage() {
    local name=$1 start after="" need
    shift
    if [[ $1 == --after ]]; then
        after=$2
        shift 2
    fi
    if [[ -e "$OUT/$name.done" ]]; then
        echo "stage $name: done before, skipped"
        return
    fi
    if [[ -n "${STAGES:-}" && " $STAGES " != *" $name "* ]]; then
        echo "stage $name: not in STAGES, skipped"
        return
    fi
    for need in $after; do
        if [[ ! -e "$OUT/$need.done" ]]; then
            echo "stage $name: needs stage $need finished first" >&2
            return 1
        fi
    done
    start=$(date +%s)
    echo "stage $name: started $(date -Is)" | tee -a "$OUT/stages.log"
    "$@"
    echo "stage $name: finished $(date -Is), $(( $(date +%s) - start )) s" | tee -a "$OUT/stages.log"
    touch "$OUT/$name.done"
}

# train_stage RUN_NAME [--set ...]: a meta-training run, continued from its checkpoint if any.
train_stage() {
    local name=$1 dir="$OUT/$1"
    shift
    if compgen -G "$dir/checkpoints/checkpoint-*.pt" > /dev/null; then
        "$PY" -m leap_ray train "${COMMON[@]}" "$@" --resume "$dir"
        return
    fi
    if [[ -e "$dir" ]]; then  # stopped before its first checkpoint: nothing to continue
        mv "$dir" "$dir.incomplete-$(date +%s)"
    fi
    "$PY" -m leap_ray train "${COMMON[@]}" "$@" --set logging.run_name="$name"
}

# resumable DIR COMMAND...: COMMAND, with --resume if DIR exists (a stage stopped part way).
resumable() {
    local dir=$1
    shift
    if [[ -e "$dir" ]]; then
        "$@" --resume
    else
        "$@"
    fi
}
