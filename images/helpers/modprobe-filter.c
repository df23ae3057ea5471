/*
 * The kernel's module request helper in the guest (kernel.modprobe; the agent sets it).
 *
 * Every exec of a foreign-architecture binary makes the kernel ask for a "binfmt-XXXX"
 * module, and BuildKit execs one per foreign architecture at each engine start to learn
 * which ones emulation covers: nine modprobe runs on the boot's critical path, ~0.1 s of
 * emulated CPU each. No module in the image has such an alias (rootfs.sh checks), so the
 * answer is known without asking. Everything else goes to modprobe unchanged.
 *
 * Linked statically: a dynamically linked helper would spend much of what it saves in the
 * loader.
 */
#include <string.h>
#include <unistd.h>

#ifndef MODPROBE
#define MODPROBE "/usr/sbin/modprobe"
#endif

int main(int argc, char **argv)
{
	(void)argc;
	for (char **a = argv + 1; *a; a++)
		if (strncmp(*a, "binfmt-", 7) == 0)
			return 1;
	argv[0] = "modprobe";
	execv(MODPROBE, argv);
	return 127;
}
