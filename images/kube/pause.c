/* The pod sandbox's process (Kubernetes' "pause"): it holds the pod's namespaces, reaps
 * the zombies a shared PID namespace leaves it, and exits on SIGINT or SIGTERM. Built
 * static into the Kubernetes layer's pause image (images/kubelayer.sh): no registry is
 * reachable to pull registry.k8s.io/pause from. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) { _exit(128 + sig); }

static void reap(int sig) {
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0) {
	}
}

int main(void) {
	struct sigaction q = {.sa_handler = quit}, r = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
	if (getpid() != 1)
		return 1; /* only useful as a container's init */
	if (sigaction(SIGINT, &q, NULL) < 0 || sigaction(SIGTERM, &q, NULL) < 0 || sigaction(SIGCHLD, &r, NULL) < 0)
		return 2;
	for (;;)
		pause();
}
