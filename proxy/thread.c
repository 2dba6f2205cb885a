/* thread.c - helper threads that leave the process's signals alone
 * (thread.h). */
#include <pthread.h>
#include <signal.h>

#include "proxy/thread.h"

int thread_start_blocked(pthread_t *tid, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int rc;

	/* the new thread inherits the creator's mask: set it for the time of
	 * the create only */
	sigfillset(&all);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	sigdelset(&all, SIGABRT);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(tid, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}
