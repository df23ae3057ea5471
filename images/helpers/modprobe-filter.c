/*
 * Two jobs, one helper:
 *
 * The kernel's module request helper in the guest (kernel.modprobe; the agent sets it).
 * Every exec of a foreign-architecture binary makes the kernel ask for a "binfmt-XXXX"
 * module, and BuildKit execs one per foreign architecture at each engine start to learn
 * which ones emulation covers: nine modprobe runs on the boot's critical path, ~0.1 s of
 * emulated CPU each. No module in the image has such an alias (rootfs.sh checks), so the
 * answer is known without asking.
 *
 * dockerd's modprobe (a link in the directory the agent puts first on dockerd's PATH):
 * dockerd runs "modprobe -va" for modules the boot has already loaded, twice on its
 * critical path, each a dynamically linked kmod (~50 ms). Modules that are all loaded need
 * no modprobe: it would do nothing and print nothing.
 *
 * Everything else goes to modprobe unchanged. Linked statically: a dynamically linked
 * helper would spend much of what it saves in the loader.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MODPROBE
#define MODPROBE "/usr/sbin/modprobe"
#endif
#ifndef SYS_MODULE
#define SYS_MODULE "/sys/module"
#endif

/* live says whether the module directory dir is a built-in module or a loaded one whose
 * init has finished: modprobe waits for one still loading, so this leaves it to modprobe. */
static int live(const char *dir)
{
	char path[300], state[8] = {0};
	snprintf(path, sizeof path, "%s/initstate", dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 1; /* built in: no initstate */
	ssize_t n = read(fd, state, sizeof state - 1);
	close(fd);
	return n == 5 && strcmp(state, "live\n") == 0;
}

/* loaded says whether every module argv names is loaded; only the flags that do not
 * change what loading means (-v, -a, -q) are understood, anything else asks modprobe. */
static int loaded(char **argv)
{
	int names = 0, opts = 1;
	for (char **a = argv + 1; *a; a++) {
		if (opts && strcmp(*a, "--") == 0) {
			opts = 0;
			continue;
		}
		if (opts && (*a)[0] == '-') {
			if (strspn(*a + 1, "vaq") != strlen(*a + 1) || (*a)[1] == 0)
				return 0;
			continue;
		}
		char path[256], *p;
		int n = snprintf(path, sizeof path, "%s/%s", SYS_MODULE, *a);
		if (n < 0 || n >= (int)sizeof path)
			return 0;
		for (p = path + strlen(SYS_MODULE) + 1; *p; p++)
			if (*p == '-')
				*p = '_';
		struct stat st;
		if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode) || !live(path))
			return 0;
		names++;
	}
	return names > 0;
}

int main(int argc, char **argv)
{
	(void)argc;
	for (char **a = argv + 1; *a; a++)
		if (strncmp(*a, "binfmt-", 7) == 0)
			return 1;
	if (loaded(argv))
		return 0;
	argv[0] = "modprobe";
	execv(MODPROBE, argv);
	return 127;
}
