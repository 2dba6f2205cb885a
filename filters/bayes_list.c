/* bayes_list.c - a mailing list's boilerplate, left out of the word
 * model's evidence.
 *
 * A list adds the same words to every message it relays: its footer
 * ("Irish Linux Users' Group ... listinfo/ilug for (un)subscription
 * information"), its header fields and its relays.  Learned from the
 * list's ham, those tokens say "ham" dozens of times over in every message
 * of the list, and they outweigh the text of a spam posted to it: a 419
 * letter relayed by ILUG came out at p 0.0, a spam relayed by fork at
 * 0.05 (README "Bayes", session 20).  Left out where they lean to ham
 * (bayes_probability), the message is judged by what its sender wrote;
 * a list that relays spam only keeps its evidence.  Not by rules: the
 * boilerplate of each list is learned, as the tokens in at least half of
 * the list's latest BAYES_LIST_RING learned messages, whatever their
 * class.
 *
 * Two values per list in the store: the window of remembered messages
 * ("bayes:list:<id>", their tokens) and the boilerplate made from it
 * ("bayes:listbp:<id>", sorted), so that a scan reads one small value and
 * only a learn reads the window.  Both in a byte order of their own
 * (little-endian) for machines sharing one Redis.  Two learners of one
 * list at once may lose one's message from the window: it is a sample.
 * The sender names the list, so the windows are bounded (session 20's
 * review): a cache that a full LMDB map removes (store_lmdb.c kv_room),
 * a stub of the id alone for the first message autolearn takes, a slot
 * per message id (a relearned message once), BAYES_LIST_SLOT_MAX tokens.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include "filters/bayes_list.h"
#include "proxy/log.h"
#include "proxy/sbuf.h"

#define RING_MAGIC "MWL2"         /* slots with the message's id */
#define RING_MAGIC_V1 "MWL1"      /* session 20 before its review: no ids */
#define BP_MAGIC   "MWB1"
#define LIST_ID_MAX 255            /* bytes of a list's name hashed */
#define BAYES_LIST_SLOT_MAX_READ 4096   /* a slot read: the cap before session 20's review */

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static const char *field(const struct msgscan *ms, const char *name)
{
	for (size_t i = 0; i < ms->nfields; i++)
		if (strcasecmp(ms->fields[i].name, name) == 0)
			return ms->fields[i].value;
	return NULL;
}

static int addr_byte(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
	    || c == '.' || c == '-' || c == '_' || c == '+';
}

/* first_addr - the first local@domain of v (out: its span), 0 none */
static int first_addr(const char *v, const char **at_start, size_t *len)
{
	for (const char *at = strchr(v, '@'); at != NULL; at = strchr(at + 1, '@')) {
		const char *s = at, *e = at + 1;

		while (s > v && addr_byte((unsigned char)s[-1]))
			s--;
		while (addr_byte((unsigned char)*e))
			e++;
		if (s < at && e > at + 1) {
			*at_start = s;
			*len = (size_t)(e - s);
			return 1;
		}
	}
	return 0;
}

/* trimmed - v's span [*name, *name + *len) without blanks at either end:
 * 1, or 0 when nothing is left */
static int trimmed(const char **name, size_t *len)
{
	while (*len > 0 && (**name == ' ' || **name == '\t')) {
		(*name)++;
		(*len)--;
	}
	while (*len > 0 && ((*name)[*len - 1] == ' ' || (*name)[*len - 1] == '\t'))
		(*len)--;
	return *len > 0;
}

/* list_name - the list's name in the message, or 0.  A List-Id that
 * names nothing (blank, or "<>": empty brackets) is no List-Id: the other
 * fields are looked at, and it is never a name of its own (until session
 * 20's review "<>" was, one list made of every message that carried it,
 * and a blank one hid the List-Post behind it). */
static int list_name(const struct msgscan *ms, const char **name, size_t *len)
{
	static const char *const by_addr[] = { "Mailing-List", "X-Mailing-List", "List-Post" };
	const char *v = field(ms, "List-Id");

	if (v != NULL && *v != '\0') {
		const char *lt = strchr(v, '<'), *gt = lt ? strchr(lt, '>') : NULL;

		if (lt != NULL && gt != NULL) {
			*name = lt + 1;
			*len = (size_t)(gt - lt - 1);
		} else {
			*name = v;
			*len = strlen(v);
		}
		if (trimmed(name, len))
			return 1;
	}
	for (size_t i = 0; i < sizeof(by_addr) / sizeof(by_addr[0]); i++)
		if ((v = field(ms, by_addr[i])) != NULL && first_addr(v, name, len))
			return 1;
	/* a list's own Sender: its owner or bounce address (majordomo's
	 * owner-x, Mailman's x-admin/-bounces, x-request) */
	if ((v = field(ms, "Sender")) != NULL && first_addr(v, name, len)) {
		static const char *const marks[] = { "owner-", "-admin@", "-bounces", "-request@" };
		char a[LIST_ID_MAX + 1];

		snprintf(a, sizeof(a), "%.*s", (int)(*len < LIST_ID_MAX ? *len : LIST_ID_MAX), *name);
		for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
			if (strcasestr(a, marks[i]) != NULL)
				return 1;
	}
	return 0;
}

int bayes_list_key(const struct msgscan *ms, char *out, size_t outsz)
{
	const char *name;
	size_t len;
	char id[LIST_ID_MAX + 1];
	const char *fields[1] = { id };

	if (!list_name(ms, &name, &len))
		return 0;
	snprintf(id, sizeof(id), "%.*s", (int)(len < LIST_ID_MAX ? len : LIST_ID_MAX), name);
	return store_key_hash("bayes:list:", fields, 1, out, outsz) < 0 ? -1 : 1;
}

/* the boilerplate's key beside the window's: "bayes:listbp:<id>" */
static void bp_key(const char *key, char *out, size_t outsz)
{
	snprintf(out, outsz, "bayes:listbp:%s", key + strlen("bayes:list:"));
}

static atomic_flag bp_damage_said = ATOMIC_FLAG_INIT;   /* bayes_list_strip's warning given */

/* one remembered message of the window: borrowed from the stored value */
struct slot {
	uint64_t id;                    /* the message's (bayes_list_note); 0: not known */
	const unsigned char *h;         /* n little-endian 64-bit tokens */
	uint32_t n;
};

/* ring_parse - the stored window into slots (at most BAYES_LIST_RING);
 * *next the slot the next message takes.  A window of RING_MAGIC has an
 * id before each slot's count; one of RING_MAGIC_V1 (session 20 before
 * its review) none: read with ids 0, which no message has (so one of its
 * messages noted again may be there twice, until it goes out of the
 * window).  The number of slots, or -1 for a value that is not one
 * (damaged, another version's). */
static int ring_parse(const unsigned char *d, size_t len, struct slot *s, uint32_t *next)
{
	size_t off = 12, idlen;
	uint32_t n, i;

	if (len < off)
		return -1;
	if (memcmp(d, RING_MAGIC, 4) == 0)
		idlen = 8;
	else if (memcmp(d, RING_MAGIC_V1, 4) == 0)
		idlen = 0;
	else
		return -1;
	*next = get32(d + 4);
	n = get32(d + 8);
	if (n > BAYES_LIST_RING || *next >= BAYES_LIST_RING)
		return -1;
	for (i = 0; i < n; i++) {
		if (len - off < idlen + 4)
			return -1;
		s[i].id = idlen ? get64(d + off) : 0;
		off += idlen;
		s[i].n = get32(d + off);
		off += 4;
		/* the cap of the version that wrote it: a window of the
		 * 4096-token cap of before keeps its messages until they go
		 * out of it */
		if (s[i].n > BAYES_LIST_SLOT_MAX_READ || (len - off) / 8 < s[i].n)
			return -1;
		s[i].h = d + off;
		off += (size_t)s[i].n * 8;
	}
	return off == len ? (int)n : -1;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* boilerplate - the tokens in at least half of the n slots, sorted, as
 * the stored value (BP_MAGIC, count, tokens) into out */
static void boilerplate(const struct slot *s, uint32_t n, struct sbuf *out)
{
	size_t total = 0, k = 0, i, j, kept = 0;
	uint64_t *all;
	unsigned char w[8];

	for (i = 0; i < n; i++)
		total += s[i].n;
	all = xmalloc((total ? total : 1) * sizeof(*all));
	for (i = 0; i < n; i++)
		for (j = 0; j < s[i].n; j++)
			all[k++] = get64(s[i].h + 8 * j);
	qsort(all, total, sizeof(*all), cmp_u64);
	sbuf_add(out, BP_MAGIC, 4);
	sbuf_add(out, "\0\0\0\0", 4);            /* the count, below */
	for (i = 0; i < total; i = j) {
		for (j = i; j < total && all[j] == all[i]; j++)
			;
		/* a slot holds each token once: the run is its count */
		if (2 * (j - i) >= n) {
			put64(w, all[i]);
			sbuf_add(out, w, 8);
			kept++;
		}
	}
	put32((unsigned char *)out->data + 4, (uint32_t)kept);
	free(all);
}

/* put_slot - one slot (id, count, tokens) onto the stored window */
static void put_slot(struct sbuf *ring, uint64_t id, uint32_t n, const unsigned char *h,
                     const uint64_t *hv)
{
	unsigned char w[8];

	put64(w, id);
	sbuf_add(ring, w, 8);
	put32(w, n);
	sbuf_add(ring, w, 4);
	if (h != NULL)
		sbuf_add(ring, h, (size_t)n * 8);
	else
		for (uint32_t i = 0; i < n; i++) {
			put64(w, hv[i]);
			sbuf_add(ring, w, 8);
		}
}

int bayes_list_note(struct store *st, const char *key, uint64_t id, const struct bayes_tokens *t,
                    unsigned ttl_s, int stub_first)
{
	unsigned char *old = NULL, w[8];
	size_t oldlen = 0;
	struct slot s[BAYES_LIST_RING];
	uint32_t next = 0, n = 0, at, total;
	struct sbuf ring, bp;
	char bpk[96];
	int r, rc = -1, stub = 0;

	if (t->n > BAYES_LIST_SLOT_MAX || t->n == 0)
		return 0;               /* a long text: its words, not the list's */
	if ((r = store_blob_get(st, key, &old, &oldlen)) < 0)
		return -1;
	if (r == 0)
		stub = stub_first;      /* a name not seen before */
	else {
		int got = ring_parse(old, oldlen, s, &next);

		if (got < 0) {
			slog(NULL, LOG_WARNING, "bayes: %s is no list window of this version: started anew", key);
			next = 0;
		} else
			n = (uint32_t)got;
	}
	/* a message the window has (forgotten and learned again) is not
	 * counted twice: its tokens would weigh double in the half */
	for (uint32_t k = 0; k < n; k++)
		if (s[k].id == id) {
			free(old);
			return 0;
		}
	/* a name seen once before: its stub (one slot without tokens) gives
	 * way to the window's first message */
	if (n == 1 && s[0].n == 0)
		n = next = 0;
	sbuf_init(&ring, STORE_BLOB_MAX);
	sbuf_init(&bp, STORE_BLOB_MAX);
	sbuf_add(&ring, RING_MAGIC, 4);
	if (stub) {
		/* autolearn's: a window only for a name learned twice (see
		 * bayes_list.h) */
		put32(w, 0);
		sbuf_add(&ring, w, 4);
		put32(w, 1);
		sbuf_add(&ring, w, 4);
		put_slot(&ring, id, 0, NULL, NULL);
	} else {
		/* a new slot until the window is full, then the oldest */
		at = n < BAYES_LIST_RING ? n : next;
		total = n < BAYES_LIST_RING ? n + 1 : n;
		put32(w, (at + 1) % BAYES_LIST_RING);
		sbuf_add(&ring, w, 4);
		put32(w, total);
		sbuf_add(&ring, w, 4);
		for (uint32_t k = 0; k < total; k++) {
			if (k == at)
				put_slot(&ring, id, (uint32_t)t->n, NULL, t->h);
			else
				put_slot(&ring, s[k].id, s[k].n, s[k].h, NULL);
		}
		/* the boilerplate of the new window, from the value just made */
		uint32_t m = 0;
		int got = ring_parse((const unsigned char *)ring.data, ring.len, s, &m);

		if (got >= BAYES_LIST_MIN)
			boilerplate(s, (uint32_t)got, &bp);
	}
	bp_key(key, bpk, sizeof(bpk));
	if (store_blob_set(st, key, ring.data, ring.len, ttl_s) == 0
	    && (bp.len == 0 || store_blob_set(st, bpk, bp.data, bp.len, ttl_s) == 0))
		rc = 0;
	sbuf_free(&ring);
	sbuf_free(&bp);
	free(old);
	return rc;
}

int bayes_list_strip(struct store *st, const char *key, struct bayes_tokens *t, struct bayes_tokens *listed)
{
	unsigned char *d = NULL;
	size_t len = 0, n, i, k, lo, hi;
	char bpk[96];
	int r;

	listed->n = 0;
	bp_key(key, bpk, sizeof(bpk));
	if ((r = store_blob_get(st, bpk, &d, &len)) < 0)
		return -1;
	if (r == 0)
		return 0;
	if (len < 8 || memcmp(d, BP_MAGIC, 4) != 0 || (n = get32(d + 4)) != (len - 8) / 8
	    || (len - 8) % 8 != 0) {
		/* said once a process, not at every scan of the list (a
		 * warning a message until session 20's review): the list's
		 * next learned message writes it anew, and a removal here
		 * would be one store call more in every scan's worst case */
		if (!atomic_flag_test_and_set(&bp_damage_said))
			slog(NULL, LOG_WARNING, "bayes: %s is no list boilerplate of this version: not used "
			     "(until the list's next learned message; others like it not logged)", bpk);
		free(d);
		return 0;
	}
	for (i = 0, k = 0; i < t->n; i++) {
		int found = 0;

		/* the stored tokens are sorted (boilerplate); a damaged order
		 * only makes this miss, never read out of bounds */
		for (lo = 0, hi = n; lo < hi;) {
			size_t mid = lo + (hi - lo) / 2;
			uint64_t v = get64(d + 8 + 8 * mid);

			if (v == t->h[i]) {
				found = 1;
				break;
			}
			if (v < t->h[i])
				lo = mid + 1;
			else
				hi = mid;
		}
		if (!found)
			t->h[k++] = t->h[i];
		else {
			if (listed->n == listed->cap) {
				listed->cap = listed->cap ? listed->cap * 2 : 256;
				listed->h = xrealloc(listed->h, listed->cap * sizeof(*listed->h));
			}
			listed->h[listed->n++] = t->h[i];
		}
	}
	t->n = k;
	free(d);
	return 0;
}
