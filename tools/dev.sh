#!/usr/bin/env bash
# The README's two commands.
#
#   tools/dev.sh main            set up what is missing, build everything,
#                                run the main job
#   tools/dev.sh test [ARGS...]  set up what is missing, run the whole test
#                                suite (ARGS go to `bazel test`, e.g.
#                                --config=asan)
#
# Both start with tools/setup.sh, which installs only what is missing.
# `test` ends with one line "N passed, N failed" counted from Bazel's
# per-target results, and exits non-zero if anything failed.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

run_main() {
  bazel build //...
  # The main job is the fault demo (tests/fault/demo.c): in a network
  # namespace of its own, `netcore up` starts the services; a sandboxed
  # client downloads through the stack while phy_driver, proxy_broker and
  # the core are killed in turn; it ends with a report and "demo: PASS"
  # (exit 0) or "demo: FAIL (why)" (exit 1), and leaves nothing behind,
  # also on Ctrl-C. `bazel run` starts it in its runfiles tree, where it
  # finds the netcore binary (it also looks beside itself).
  bazel run //tests/fault:demo
}

# Counts per-target results in a `bazel test` log.
summarize() {
  local log=$1 passed failed
  passed=$(grep -cE '^//[^ ]+ +(\(cached\) )?PASSED' "$log" || true)
  failed=$(grep -cE '^//[^ ]+ +(\(cached\) )?(FAILED|TIMEOUT|NO STATUS|INCOMPLETE|FLAKY|FAILED TO BUILD)' "$log" || true)
  echo "$passed passed, $failed failed"
}

run_test() {
  local log rc=0
  log=$(mktemp)
  trap 'rm -f "$log"' RETURN
  bazel test "$@" -- //... 2>&1 | tee "$log" || rc=$?
  summarize "$log"
  return "$rc"
}

[ $# -ge 1 ] || usage
cmd=$1
shift
"$top/tools/setup.sh"
case "$cmd" in
  main) run_main "$@" ;;
  test) run_test "$@" ;;
  *) usage ;;
esac
