# Shared by the staged experiment scripts (sourced, not run): `stage`, `train_stage` and
# `resumable`. They read OUT, PY and COMMON from the script that sources them.

# stage NAME COMMAND...: runs COMMAND unless OUT/NAME.done exists, or STAGES (names separated
# by spaces) is set and does not name it; logs its wall time. STAGES runs independent stages
# side by side on a machine with cores to spare, e.g. a finetune stage (one process) beside a
# meta-training one; a stage that reads another's output still needs that one finished first.
stage() {
    local name=$1 start
    shift
    if [[ -e "$OUT/$name.done" ]]; then
        echo "stage $name: done before, skipped"
        return
    fi
    if [[ -n "${STAGES:-}" && " $STAGES " != *" $name "* ]]; then
        echo "stage $name: not in STAGES, skipped"
        return
    fi
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
