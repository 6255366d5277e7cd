#!/usr/bin/env bash
# demo_test: the main job end to end, as CI runs it.
#
# Runs the demo (tests/fault/demo.c) once, bounded (SIGTERM after 240 s,
# which the demo answers by cleaning up; SIGKILL 30 s later), and checks
#   - exit status 0 and the final line "demo: PASS";
#   - the report has a row for each of the three kills;
#   - nothing is left behind: the namespace, the temp directory, the
#     supervisor's pid, any process started with a path in its run dir.
# The names come from the demo's own "up: namespace ..., TUN ..., run dir
# ... (pid ...)" line, so demos and other tests running beside this one
# are never mistaken for leftovers.
set -uo pipefail

demo=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT

rc=0
timeout -k 30 240 "$demo" 2>&1 | tee "$out" || rc=${PIPESTATUS[0]}

fail() {
  echo "demo_test: FAIL: $*" >&2
  exit 1
}

[ "$rc" -eq 0 ] || fail "the demo exited with $rc"
[ "$(tail -n 1 "$out")" = "demo: PASS" ] || fail "the last line is not 'demo: PASS'"
for who in phy_driver proxy_broker "netcore core"; do
  grep -qE "^$who +[0-9]+ ms +[0-9]+ ms .* yes$" "$out" ||
    fail "no passing report row for $who"
done

up=$(grep -m1 '^up: namespace ' "$out") || fail "no 'up:' line"
ns=$(sed -E 's/^up: namespace ([^,]+),.*/\1/' <<<"$up")
run_dir=$(sed -E 's/.* run dir ([^ ]+) \(pid.*/\1/' <<<"$up")
sup=$(sed -E 's/.*\(pid ([0-9]+)\).*/\1/' <<<"$up")
[ -n "$ns" ] && [ -n "$run_dir" ] && [ -n "$sup" ] || fail "cannot parse: $up"

if ip netns list | grep -qw -- "$ns"; then fail "namespace $ns left behind"; fi
[ ! -e "$(dirname "$run_dir")" ] || fail "$(dirname "$run_dir") left behind"
if kill -0 "$sup" 2>/dev/null && grep -q netcore "/proc/$sup/comm" 2>/dev/null; then
  fail "the supervisor (pid $sup) is still running"
fi
for f in /proc/[0-9]*/cmdline; do
  if tr '\0' ' ' <"$f" 2>/dev/null | grep -qF -- "$run_dir"; then
    fail "a process still runs with $run_dir: $(tr '\0' ' ' <"$f")"
  fi
done
echo "demo_test: PASS (exit 0, three kills as designed, nothing left behind)"
