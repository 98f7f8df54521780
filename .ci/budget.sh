# Sourced by the CI steps that run after the README's test command. A step's cost was measured on
# the 2-core reference machine; another machine runs it as much faster or slower as it ran the
# test command, so the cost is scaled by that ratio (measured in the same CI run, not assumed).
#   budget_check NAME COST_S SECONDS_LEFT TESTS_S   -> exit status 0 to run, 1 to skip (says why)
REFERENCE_TESTS_S=900 # the README's test command (install + pytest) on the 2-core machine, quiet

budget_check() {
    local name=$1 reference_cost=$2 left=${3:-} tests_s=${4:-}
    local cost=$reference_cost
    if [[ -n "$tests_s" ]]; then
        cost=$((reference_cost * tests_s / REFERENCE_TESTS_S))
    fi
    if [[ -n "$left" && "$left" -lt "$cost" ]]; then
        echo "$name: skipped, $left s left of the CI budget and this step needs about $cost s" \
            "(${reference_cost} s on the 2-core machine${tests_s:+, scaled by the test time here, ${tests_s} s / ${REFERENCE_TESTS_S} s})"
        return 1
    fi
    [[ -z "$left" ]] && return 0 # run by hand: no budget to check
    echo "$name: running, about $cost s of the $left s left${tests_s:+ (scaled by the test time ${tests_s} s / ${REFERENCE_TESTS_S} s)}"
    return 0
}
