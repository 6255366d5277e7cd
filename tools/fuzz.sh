#!/bin/sh
# Runs netcore's fuzz targets under libFuzzer (clang, ASan + UBSan), outside
# Bazel. The Bazel suite runs the same targets over a fixed corpus
# (//shm/fuzz:all, //services/netcore/fuzz:all); this explores for real.
#
#   tools/fuzz.sh [target] [seconds]
#
# target: region_attach, ring, pool_accept (shm/fuzz/<target>_fuzz.c),
# dns_parse (shim/fuzz/dns_parse_fuzz.c: DNS responses to the shim),
# packet (services/netcore/fuzz/packet_fuzz.c: packets from the phy into the
# core and lwIP), sup_config or sup_ctl (services/supervisor/fuzz/: the
# supervisor's config file and control messages), or all (the default). seconds: how long each target runs,
# default 30.
#
# Work goes to $FUZZ_OUT (default /tmp/netcore-fuzz): the binaries, a
# corpus per target that grows across runs (seeded from the target's
# in-code seeds), crash artifacts and a log per target (an input that runs
# for more than 10 s counts as a crash: a hang). Replay a crash with
# the fuzzer binary, or with the Bazel test binary:
#   bazel-bin/shm/fuzz/ring_fuzz $FUZZ_OUT/artifacts/ring-crash-...
#   bazel-bin/services/netcore/fuzz/packet_fuzz $FUZZ_OUT/artifacts/packet-...
# (PACKET_FUZZ_TRACE=1, or 2 for hex, makes the packet target print every
# packet in and out.)
#
# Needs clang and libFuzzer's runtime (Debian: clang, libclang-rt-14-dev);
# installs them with apt-get when missing. Asks Bazel (bazel query) what
# each target compiles and links. The packet target also needs lwIP's
# source (tools/fetch_lwip.sh).
set -eu

cd "$(dirname "$0")/.."

usage() {
	echo "usage: $0 [region_attach|ring|pool_accept|packet|sup_config|sup_ctl|dns_parse|all] [seconds]" >&2
	exit 2
}

target=${1:-all}
seconds=${2:-30}
case $seconds in
'' | *[!0-9]*) usage ;;
esac
case $target in
all) targets="region_attach ring pool_accept packet sup_config sup_ctl dns_parse" ;;
region_attach | ring | pool_accept | packet | sup_config | sup_ctl | dns_parse)
	targets=$target ;;
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

# Each target is a Bazel cc_test; what it compiles and links is read from
# Bazel (its transitive C sources and -l linkopts), so this script keeps no
# file lists of its own: lwIP's are in third_party/lwip/lwip.BUILD, ours in
# the BUILD files. The driver (tools/fuzz/fuzz_driver.c) is swapped for
# libFuzzer's main.
label_of() {
	case $1 in
	packet) echo //services/netcore/fuzz:packet_fuzz ;;
	sup_config) echo //services/supervisor/fuzz:config_fuzz ;;
	sup_ctl) echo //services/supervisor/fuzz:ctl_fuzz ;;
	dns_parse) echo //shim/fuzz:dns_parse_fuzz ;;
	*) echo "//shm/fuzz:${1}_fuzz" ;;
	esac
}
ours="//...:* union @lwip//:*" # not Bazel's own tools
lwip_root=third_party/lwip/src
# Runs a query into $out/query.out; stops the script if it fails.
bazel_query() {
	bazel query --noshow_progress "$@" >"$out/query.out" \
		2>"$out/query.err" || {
		cat "$out/query.err" >&2
		echo "fuzz: bazel query failed: $*" >&2
		exit 1
	}
}

# NC_COPTS (tools/copts.bzl) without -Werror: clang may warn where gcc,
# the project's compiler, does not; a warning must not stop a fuzz run.
# The include paths are those of //services/netcore/lwip:lwip_port and
# @lwip//:lwip (includes = ...), as -isystem like Bazel's.
cflags="-std=c11 -g -O1 -fno-omit-frame-pointer -D_GNU_SOURCE -I.
	-isystem $lwip_root/src/include -isystem services/netcore/lwip
	-Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
	-Wno-missing-field-initializers"
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=all"

# Third-party sources (lwIP): compiled on their own, warnings off (not our
# code to fix), with the fuzzer's coverage and the same sanitizers as the
# rest (lwipopts.h picks lwIP's allocators by them: every unit must agree).
# Sets $archive to their archive, or to nothing if there are none.
build_third_party() {
	dir=$out/obj/$1
	archive=
	rm -rf "$dir"
	mkdir -p "$dir"
	[ -n "$(echo "$2" | tr -d '[:space:]')" ] || return 0
	echo "fuzz: building third-party sources of $1" >&2
	# One object per source, named after its path, nproc at a time.
	# shellcheck disable=SC2016 # expanded by the inner sh
	TP_CFLAGS="$cflags -w -fsanitize=fuzzer-no-link $sanitize" \
		TP_OBJ=$dir xargs -P "$(nproc)" -n 1 sh -c \
		'exec clang $TP_CFLAGS -c "$1" \
			-o "$TP_OBJ/$(echo "$1" | tr / _).o"' sh >&2 <<EOF
$2
EOF
	archive=$dir/third_party.a
	ar rcs "$archive" "$dir"/*.o
}

failed=
summary=
for t in $targets; do
	label=$(label_of "$t")
	# Its C sources as paths (@lwip//:src/... is in $lwip_root), and the
	# -l linkopts of its cc rules.
	bazel_query "kind('source file', deps($label)) intersect ($ours)"
	srcs=$(sed -n -e "s|^@lwip//:\(.*\.c\)\$|$lwip_root/\1|p" \
		-e 's|^//:\(.*\.c\)$|\1|p' \
		-e 's|^//\([^:][^:]*\):\(.*\.c\)$|\1/\2|p' "$out/query.out")
	bazel_query --output=build \
		"kind('cc_.* rule', deps($label)) intersect ($ours)"
	libs=$(grep -o '"-l[^"]*"' "$out/query.out" | tr -d '"' | sort -u |
		tr '\n' ' ')
	own=
	third=
	for f in $srcs; do
		case $f in
		tools/fuzz/fuzz_driver.c) ;;
		third_party/*) third="$third
$f" ;;
		*) own="$own $f" ;;
		esac
	done
	if [ -z "$own" ]; then
		echo "fuzz: no sources for $label" >&2
		exit 1
	fi
	build_third_party "$t" "$third"
	bin=$out/${t}_fuzz
	corpus=$out/corpus/$t
	log=$out/$t.log
	mkdir -p "$corpus"

	echo "fuzz: building $t" >&2
	# shellcheck disable=SC2086 # word splitting of the source/flag lists
	clang $cflags -fsanitize=fuzzer $sanitize $own $archive $libs \
		-o "$bin"
	# The plain driver writes the target's in-code seeds into the corpus.
	# (Same flags: third-party objects carry the sanitizers and the
	# coverage hooks of -fsanitize=fuzzer-no-link, which the sanitizer
	# runtime stubs.)
	# shellcheck disable=SC2086
	clang $cflags -fsanitize=fuzzer-no-link $sanitize $own \
		tools/fuzz/fuzz_driver.c $archive $libs -o "$bin.seeds"
	"$bin.seeds" --write-seeds "$corpus" >/dev/null

	echo "fuzz: running $t for ${seconds}s (log: $log)" >&2
	status=0
	ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		"$bin" -max_total_time="$seconds" -print_final_stats=1 \
		-max_len=4096 -timeout=10 -artifact_prefix="$out/artifacts/$t-" \
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
