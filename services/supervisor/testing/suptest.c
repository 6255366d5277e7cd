/* See suptest.h. */
#include "services/supervisor/testing/suptest.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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
		if (e->d_type == DT_DIR)
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
