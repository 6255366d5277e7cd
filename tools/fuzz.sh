#!/bin/sh
# Runs shm's fuzz targets under libFuzzer (clang, ASan + UBSan), outside
# Bazel. The Bazel suite runs the same targets over a fixed corpus
# (//shm/fuzz:all); this explores for real.
#
#   tools/fuzz.sh [target] [seconds]
#
# target: region_attach, ring, pool_accept (shm/fuzz/<target>_fuzz.c), or
# all (the default). seconds: how long each target runs, default 30.
#
# Work goes to $FUZZ_OUT (default /tmp/netcore-fuzz): the binaries, a
# corpus per target that grows across runs (seeded from the target's
# in-code seeds), crash artifacts and a log per target. Replay a crash with
# the fuzzer binary, or with the Bazel test binary:
#   bazel-bin/shm/fuzz/ring_fuzz $FUZZ_OUT/artifacts/ring-crash-...
#
# Needs clang and libFuzzer's runtime (Debian: clang, libclang-rt-14-dev);
# installs them with apt-get when missing.
set -eu

cd "$(dirname "$0")/.."

usage() {
	echo "usage: $0 [region_attach|ring|pool_accept|all] [seconds]" >&2
	exit 2
}

target=${1:-all}
seconds=${2:-30}
case $seconds in
'' | *[!0-9]*) usage ;;
esac
case $target in
all) targets="region_attach ring pool_accept" ;;
region_attach | ring | pool_accept) targets=$target ;;
*) usage ;;
esac

out=${FUZZ_OUT:-/tmp/netcore-fuzz}
mkdir -p "$out/artifacts"

# A trivial fuzzer links only if clang and the libFuzzer runtime are there.
have_libfuzzer() {
	command -v clang >/dev/null 2>&1 || return 1
	printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
		'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
		'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)' \
		'{ (void)d; (void)n; return 0; }' >"$out/probe.c"
	clang -fsanitize=fuzzer "$out/probe.c" -o "$out/probe" >/dev/null 2>&1
}
if ! have_libfuzzer; then
	echo "fuzz: installing clang and libclang-rt-14-dev" >&2
	sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get install -y --no-install-recommends clang \
		libclang-rt-14-dev
	have_libfuzzer || {
		echo "fuzz: clang cannot link -fsanitize=fuzzer" >&2
		exit 1
	}
fi

# The library's own sources: shm/*.c except its tests (which have mains).
lib_srcs=
for f in shm/*.c; do
	case $f in
	*_test.c) ;;
	*) lib_srcs="$lib_srcs $f" ;;
	esac
done

# NC_COPTS (tools/copts.bzl) without -Werror: clang may warn where gcc,
# the project's compiler, does not; a warning must not stop a fuzz run.
cflags="-std=c11 -g -O1 -fno-omit-frame-pointer -D_GNU_SOURCE -I.
	-Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
	-Wno-missing-field-initializers"
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=all"

failed=
summary=
for t in $targets; do
	src=shm/fuzz/${t}_fuzz.c
	bin=$out/${t}_fuzz
	corpus=$out/corpus/$t
	log=$out/$t.log
	mkdir -p "$corpus"

	echo "fuzz: building $t" >&2
	# shellcheck disable=SC2086 # word splitting of the flag lists
	clang $cflags -fsanitize=fuzzer $sanitize "$src" $lib_srcs -lck \
		-o "$bin"
	# The plain driver writes the target's in-code seeds into the corpus.
	# shellcheck disable=SC2086
	clang $cflags "$src" shm/fuzz/fuzz_driver.c $lib_srcs -lck \
		-o "$bin.seeds"
	"$bin.seeds" --write-seeds "$corpus" >/dev/null

	echo "fuzz: running $t for ${seconds}s (log: $log)" >&2
	status=0
	ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		"$bin" -max_total_time="$seconds" -print_final_stats=1 \
		-max_len=4096 -artifact_prefix="$out/artifacts/$t-" \
		"$corpus" >"$log" 2>&1 || status=$?

	# "Done 123456 runs in 30 second(s)"
	runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1/p' "$log")
	secs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\2/p' "$log")
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
	files=$(find "$corpus" -type f | wc -l)
	rate=
	if [ -n "$runs" ] && [ -n "$secs" ] && [ "$secs" -gt 0 ]; then
		rate=$((runs / secs))
	fi
	if [ "$status" -eq 0 ]; then
		line="$t: ok, ${runs:-?} runs, ~${rate:-?} exec/s, cov ${cov:-?}, corpus $files"
	else
		line="$t: FAILED (exit $status), see $log and $out/artifacts/"
		failed="$failed $t"
		tail -n 30 "$log" >&2
	fi
	echo "fuzz: $line" >&2
	summary="$summary$line
"
done

printf '\n%s' "$summary"
[ -z "$failed" ]
