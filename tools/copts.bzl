"""Compiler options shared by all of netcore's own C code.

Third-party code (lwIP) gets its own, laxer set in third_party/lwip; our code
is always -Wall -Wextra -Werror.
"""

NC_COPTS = [
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wshadow",
    "-Wstrict-prototypes",
    "-Wmissing-prototypes",
    "-Wno-missing-field-initializers",
    "-D_GNU_SOURCE",
]

# Tests use cmocka's macros, which trip -Wmissing-prototypes on nothing of
# ours; everything else stays.
NC_TEST_COPTS = NC_COPTS + ["-Wno-missing-prototypes"]

def nc_cmocka_test(name, srcs, deps = [], linkopts = [], **kwargs):
    """A cmocka unit test beside the code it tests."""
    native.cc_test(
        name = name,
        srcs = srcs,
        copts = NC_TEST_COPTS,
        deps = deps,
        linkopts = ["-lcmocka"] + linkopts,
        **kwargs
    )
