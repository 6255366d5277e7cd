/* See suptest.h. */
#include "services/supervisor/testing/suptest.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int64_t suptest_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void suptest_pause_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

int suptest_reap(pid_t pid, int64_t ms)
{
	int status;
	int64_t deadline = suptest_now_ms() + ms;
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (suptest_now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -1;
		}
		suptest_pause_ms(5);
	}
	return status;
}

/* Reads fd into out until EOF, the deadline or a full buffer. */
static void read_until(int fd, char *out, size_t cap, int64_t deadline)
{
	size_t used = 0;
	while (suptest_now_ms() < deadline && used + 1 < cap) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		if (poll(&pf, 1, 100) <= 0)
			continue;
		ssize_t n = read(fd, out + used, cap - 1 - used);
		if (n <= 0)
			break;
		used += (size_t)n;
	}
	out[used] = '\0';
}

int suptest_run(char *const argv[], char *out, size_t cap, bool err_too,
                int timeout_ms)
{
	int p[2];
	out[0] = '\0';
	if (pipe2(p, O_CLOEXEC) != 0)
		return -1;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	if (err_too)
		posix_spawn_file_actions_adddup2(&fa, p[1], 2);
	pid_t pid;
	int err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	int64_t deadline = suptest_now_ms() + timeout_ms;
	if (!err)
		read_until(p[0], out, cap, deadline);
	close(p[0]);
	return err ? -1 : suptest_reap(pid, deadline - suptest_now_ms() + 1000);
}

int suptest_start_supervisor(const char *netcore, const char *conf,
                             const char *err_path, int timeout_ms, pid_t *pid)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		return -1;
	char *argv[] = {(char *)netcore, "up", "--config", (char *)conf,
	                "--ready-fd",    "3",  NULL};
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], 3);
	posix_spawn_file_actions_addopen(&fa, 2, err_path,
	                                 O_WRONLY | O_CREAT | O_TRUNC, 0600);
	int err = posix_spawn(pid, netcore, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	char buf[16] = {0};
	struct pollfd pf = {.fd = p[0], .events = POLLIN};
	int ok = !err && poll(&pf, 1, timeout_ms) == 1 &&
	         read(p[0], buf, sizeof(buf) - 1) == 6 &&
	         strcmp(buf, "ready\n") == 0;
	close(p[0]);
	return ok ? 0 : -1;
}

int suptest_exit_code(int status)
{
	return status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void suptest_remove_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *e;
	char path[512];
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		struct stat st;
		if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
			suptest_remove_tree(path);
		else
			unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

void suptest_dump_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[1200];
	while (f && fgets(line, sizeof(line), f))
		fputs(line, stderr);
	if (f)
		fclose(f);
}
