/* uplog.c - a condition logged once per key per interval and on change
 * (uplog.h). */
#include <stdio.h>
#include <string.h>

#include "uplog.h"

static struct uplog_table hops = UPLOG_TABLE_INIT(UPLOG_EVERY_MS);

/* find - key's slot; key already cut as the slots hold it */
static struct uplog_slot *find(struct uplog_table *t, const char *key)
{
	for (size_t i = 0; i < UPLOG_SLOTS; i++)
		if (t->slots[i].key[0] != '\0' && strcmp(t->slots[i].key, key) == 0)
			return &t->slots[i];
	return NULL;
}

/* take - a slot for key: a free one, else the one whose line is oldest */
static struct uplog_slot *take(struct uplog_table *t, const char *key)
{
	struct uplog_slot *s = NULL;
	for (size_t i = 0; i < UPLOG_SLOTS; i++) {
		if (t->slots[i].key[0] == '\0') {
			s = &t->slots[i];
			break;
		}
		if (s == NULL || t->slots[i].line_ms < s->line_ms) s = &t->slots[i];
	}
	if (s->kind != 0) atomic_fetch_sub(&t->going, 1);
	memset(s, 0, sizeof *s);
	snprintf(s->key, sizeof s->key, "%s", key);
	return s;
}

int uplog_table_due(struct uplog_table *t, const char *key, int kind, long long now_ms,
                    unsigned long *since)
{
	char cut[sizeof t->slots[0].key];
	int due = 0;

	/* a key longer than a slot holds is cut alike for every caller */
	snprintf(cut, sizeof cut, "%s", key);
	pthread_mutex_lock(&t->lock);
	struct uplog_slot *s = find(t, cut);
	if (s == NULL) s = take(t, cut);
	if (s->kind != kind) {                        /* first, or changed */
		if (s->kind == 0) atomic_fetch_add(&t->going, 1);
		s->kind = kind;
		s->since = 0;
		due = 1;
	} else if (now_ms - s->line_ms >= t->every_ms) {
		due = 1;
	} else {
		s->since++;
	}
	if (due) {
		*since = s->since;
		s->since = 0;
		s->line_ms = now_ms;
	}
	pthread_mutex_unlock(&t->lock);
	return due;
}

int uplog_table_clear(struct uplog_table *t, const char *key)
{
	char cut[sizeof t->slots[0].key];
	int was = 0;

	if (atomic_load(&t->going) == 0) return 0;
	snprintf(cut, sizeof cut, "%s", key);
	pthread_mutex_lock(&t->lock);
	struct uplog_slot *s = find(t, cut);
	if (s != NULL && s->kind != 0) {
		atomic_fetch_sub(&t->going, 1);
		s->kind = 0;
		s->since = 0;
		was = 1;
	}
	pthread_mutex_unlock(&t->lock);
	return was;
}

void uplog_table_reset(struct uplog_table *t)
{
	pthread_mutex_lock(&t->lock);
	memset(t->slots, 0, sizeof t->slots);
	atomic_store(&t->going, 0);
	pthread_mutex_unlock(&t->lock);
}

int uplog_due(const char *hop, int kind, long long now_ms, unsigned long *since)
{
	return uplog_table_due(&hops, hop, kind, now_ms, since);
}

int uplog_clear(const char *hop)
{
	return uplog_table_clear(&hops, hop);
}

void uplog_reset(void)
{
	uplog_table_reset(&hops);
}
