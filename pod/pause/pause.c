/*
 * crisp's built-in pause: holds a pod's namespaces for as long as the pod lives.
 *
 * As PID 1 of a pod's PID namespace it reaps orphans. Signals are taken synchronously
 * (blocked, then sigwaitinfo) rather than by handlers: the kernel drops unhandled signals sent
 * to a namespace's init, but never blocked ones.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		puts("crisp-pause");
		return 0;
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) {
		perror("sigprocmask");
		return 1;
	}
	for (;;) {
		int sig = sigwaitinfo(&set, NULL);
		if (sig == SIGCHLD) {
			while (waitpid(-1, NULL, WNOHANG) > 0)
				;
		} else if (sig == SIGINT || sig == SIGTERM) {
			return 0;
		} else if (sig < 0 && errno != EINTR) {
			perror("sigwaitinfo");
			return 1;
		}
	}
}
