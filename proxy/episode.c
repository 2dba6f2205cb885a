/* episode.c - conditions logged as start, "goes on" and end (episode.h). */
#include "episode.h"
#include "monotime.h"

long long episode_now_ms(void)
{
	return monotime_ms() + 1;
}

enum episode_line episode_step(struct episode *ep, long long now_ms, unsigned long *count,
                               long long *secs)
{
	/* what was counted just before is the episode's (its first refusal) */
	if (ep->line_ms == 0) {
		ep->line_ms = now_ms;
		return EPISODE_STARTS;
	}
	if (now_ms - ep->line_ms < (ep->every_ms > 0 ? ep->every_ms : EPISODE_LOG_MS))
		return EPISODE_QUIET;
	*count = ep->count;
	*secs = (now_ms - ep->line_ms) / 1000;
	ep->line_ms = now_ms;
	ep->count = 0;
	return EPISODE_LASTS;
}

int episode_end(struct episode *ep, long long now_ms, unsigned long *count, long long *secs)
{
	if (ep->line_ms == 0)
		return 0;
	*count = ep->count;
	*secs = (now_ms - ep->line_ms) / 1000;
	ep->line_ms = 0;
	ep->count = 0;
	return 1;
}
