# Sourced by the bench scripts that name their recipes in an associative array `config` (label →
# CONFIG[:section.key=value...]) and list them in order in `all`.
#   bench_matrix OUT BENCH_ARGS...
# runs `frugalrl bench` over the labels in $RECIPES (default: all of them), pinned to core $CORE when it is
# set, into OUT, with BENCH_ARGS (seeds, budget, `--` and the overrides every run shares). Two processes
# with disjoint RECIPES on two cores may share one OUT; a last call without RECIPES writes the summary.
bench_matrix() {
    local out=$1 label
    shift
    local recipes=() pin=()
    for label in ${RECIPES:-$all}; do
        recipes+=(--recipe "$label=${config[$label]}")
    done
    [[ -n "${CORE:-}" ]] && pin=(taskset -c "$CORE")
    "${pin[@]}" frugalrl bench "${recipes[@]}" --out "$out" "$@"
}
