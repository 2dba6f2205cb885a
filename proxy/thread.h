/* thread.h - helper threads that leave the process's signals alone.
 *
 * A signal sent to the process goes to any one of its threads that does
 * not block it.  The processes take theirs on one thread each (the
 * master's sigtimedwait, the scanner's and the proxy's loops, the CLI's
 * main thread), and a helper thread (the antivirus database watcher, the
 * rules' compile workers, the Bayes training and its lock's renewal, the
 * scanner's workers, the proxy's other loops, the DNS dispatcher, the
 * network rules' workers) that took one would run a
 * handler where nobody expects it, or leave the signal unseen by the loop
 * that waits for it.  So helpers start with every signal blocked but the
 * ones of a fault of their own (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT):
 * those must still reach the handlers (the sanitizers' report) or kill
 * the process as usual. */
#ifndef MW_THREAD_H
#define MW_THREAD_H

#include <pthread.h>

/* thread_start_blocked - pthread_create(tid, NULL, fn, arg) with the
 * signals blocked as said above in the new thread; the caller's own mask
 * is left as it was.  Returns 0, or pthread_create's error number. */
int thread_start_blocked(pthread_t *tid, void *(*fn)(void *), void *arg);

#endif
