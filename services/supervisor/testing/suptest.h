/*
 * What the supervisor's end-to-end tests (up_test, run_test) share: the
 * clean-up of a run directory they made, and showing what the supervisor
 * said when a test fails. Test-only.
 */
#ifndef NETCORE_SERVICES_SUPERVISOR_TESTING_SUPTEST_H
#define NETCORE_SERVICES_SUPERVISOR_TESTING_SUPTEST_H

/* Removes `dir` and everything below it (files and folders only). */
void suptest_remove_tree(const char *dir);

/* Copies the file at `path` (the supervisor's captured stderr) to ours. */
void suptest_dump_file(const char *path);

#endif
