/* uplog.c - a next hop's condition logged once a minute and on change
 * (uplog.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "uplog.h"

struct uplog_slot {
	char          hop[256];   /* "" = free */
	int           kind;       /* of the last line; 0: none going */
	long long     line_ms;    /* when that line was due */
	unsigned long since;      /* met without a line since */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct uplog_slot slots[UPLOG_SLOTS];   /* under lock */
/* slots with a line going: uplog_clear, called at every connection that
 * names its client, takes no lock while there are none */
static atomic_uint going;

static struct uplog_slot *find(const char *hop)
{
	for (size_t i = 0; i < UPLOG_SLOTS; i++)
		if (slots[i].hop[0] != '\0' && strcmp(slots[i].hop, hop) == 0)
			return &slots[i];
	return NULL;
}

/* take - a slot for hop: a free one, else the one whose line is oldest */
static struct uplog_slot *take(const char *hop)
{
	struct uplog_slot *s = NULL;
	for (size_t i = 0; i < UPLOG_SLOTS; i++) {
		if (slots[i].hop[0] == '\0') {
			s = &slots[i];
			break;
		}
		if (s == NULL || slots[i].line_ms < s->line_ms) s = &slots[i];
	}
	if (s->kind != 0) atomic_fetch_sub(&going, 1);
	memset(s, 0, sizeof *s);
	/* a longer spec than a target holds is cut alike for every caller */
	snprintf(s->hop, sizeof s->hop, "%s", hop);
	return s;
}

int uplog_due(const char *hop, int kind, long long now_ms, unsigned long *since)
{
	int due = 0;
	pthread_mutex_lock(&lock);
	struct uplog_slot *s = find(hop);
	if (s == NULL) s = take(hop);
	if (s->kind != kind) {                        /* first, or changed */
		if (s->kind == 0) atomic_fetch_add(&going, 1);
		s->kind = kind;
		s->since = 0;
		due = 1;
	} else if (now_ms - s->line_ms >= UPLOG_EVERY_MS) {
		due = 1;
	} else {
		s->since++;
	}
	if (due) {
		*since = s->since;
		s->since = 0;
		s->line_ms = now_ms;
	}
	pthread_mutex_unlock(&lock);
	return due;
}

int uplog_clear(const char *hop)
{
	int was = 0;
	if (atomic_load(&going) == 0) return 0;
	pthread_mutex_lock(&lock);
	struct uplog_slot *s = find(hop);
	if (s != NULL && s->kind != 0) {
		atomic_fetch_sub(&going, 1);
		s->kind = 0;
		s->since = 0;
		was = 1;
	}
	pthread_mutex_unlock(&lock);
	return was;
}

void uplog_reset(void)
{
	pthread_mutex_lock(&lock);
	memset(slots, 0, sizeof slots);
	atomic_store(&going, 0);
	pthread_mutex_unlock(&lock);
}
