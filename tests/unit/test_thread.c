/* test_thread.c - helper threads start with the process's signals blocked
 * (proxy/thread.c), whatever the starting thread's mask, but not the
 * signals of a fault of their own; and the Bayes training's threads are
 * such helpers. */
#include <dlfcn.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "filters/bayes_chars.h"
#include "proxy/thread.h"

static void *own_mask(void *arg)
{
	pthread_sigmask(SIG_BLOCK, NULL, arg);
	return NULL;
}

static void assert_helper_mask(const sigset_t *m)
{
	static const int blocked[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGPIPE,
	                               SIGCHLD, SIGALRM, SIGQUIT };
	static const int faults[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT };

	for (size_t i = 0; i < sizeof(blocked) / sizeof(blocked[0]); i++)
		assert_true(sigismember(m, blocked[i]));
	for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
		assert_false(sigismember(m, faults[i]));
}

static void test_start_blocked(void **state)
{
	sigset_t none, some, m, now;
	pthread_t t;

	(void)state;
	sigemptyset(&none);
	pthread_sigmask(SIG_SETMASK, &none, NULL);
	assert_int_equal(thread_start_blocked(&t, own_mask, &m), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_helper_mask(&m);
	pthread_sigmask(SIG_BLOCK, NULL, &now);
	assert_false(sigismember(&now, SIGTERM));      /* the caller's mask is its own */

	/* from a thread that blocks some (a fault signal among them): the
	 * same mask, and the caller keeps its own */
	sigemptyset(&some);
	sigaddset(&some, SIGTERM);
	sigaddset(&some, SIGSEGV);
	pthread_sigmask(SIG_SETMASK, &some, NULL);
	assert_int_equal(thread_start_blocked(&t, own_mask, &m), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_helper_mask(&m);
	pthread_sigmask(SIG_BLOCK, NULL, &now);
	assert_true(sigismember(&now, SIGTERM) && sigismember(&now, SIGSEGV));
	assert_false(sigismember(&now, SIGHUP));
	pthread_sigmask(SIG_SETMASK, &none, NULL);
}

/* --- the Bayes training's threads ----------------------------------------- */

/* A thread starts with the mask its creator has when it calls
 * pthread_create: this one, which the test's own objects and libmw.a's
 * resolve to (libc's comes next), notes that mask.  (Reading the threads'
 * SigBlk in /proc instead was not reliable: an exiting thread shows 0.) */
static int counting, created, took_term;

int pthread_create(pthread_t *restrict tid, const pthread_attr_t *restrict attr,
                   void *(*fn)(void *), void *restrict arg)
{
	static int (*real)(pthread_t *restrict, const pthread_attr_t *restrict,
	                   void *(*)(void *), void *restrict);
	sigset_t m;

	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "pthread_create");
	if (counting) {
		pthread_sigmask(SIG_BLOCK, NULL, &m);
		created++;
		if (!sigismember(&m, SIGTERM) || !sigismember(&m, SIGHUP))
			took_term++;
	}
	return real(tid, attr, fn, arg);
}

static void test_bayes_training_threads(void **state)
{
	enum { N = 40 };
	static unsigned char ex[N][CHARS_PREFIX];
	struct chars_example e[N];
	float *w = malloc(CHARS_WEIGHTS * sizeof(float));
	sigset_t none;
	char m[512];

	(void)state;
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		skip();         /* one CPU: the training runs on the calling thread */
	for (size_t i = 0; i < N; i++) {
		snprintf(m, sizeof(m), "Received: from %s%zu.example\nX-Mailer: %s\nSubject: note %zu\n\n"
		    "Hello, here is note %zu about the meeting.\n", i % 2 ? "dsl-pool-" : "mail", i,
		    i % 2 ? "Mass Mailer Pro" : "Mutt", i, i * 7);
		e[i].bytes = ex[i];
		e[i].len = chars_example((const unsigned char *)m, strlen(m), ex[i]);
		e[i].spam = (int)(i % 2);
	}
	/* the caller takes every signal: a training thread that only
	 * inherited its mask would too */
	sigemptyset(&none);
	pthread_sigmask(SIG_SETMASK, &none, NULL);
	created = took_term = 0;
	counting = 1;
	chars_train(w, e, N);
	counting = 0;
	free(w);
	assert_true(created > 0);       /* else the test saw nothing */
	assert_int_equal(took_term, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_start_blocked),
		cmocka_unit_test(test_bayes_training_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
