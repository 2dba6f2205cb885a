/* uri_hosts.h - the distinct hosts of a message's URIs, links first: the
 * one list the URI host lists (enlist_uri_host: eval_facts.c's
 * check_uri_host_in_blocklist / _welcomelist, eval_net.c's
 * check_uri_host_listed) and the URI blocklists (eval_net.c's
 * check_uridnsbl) read.
 *
 * Every form of each URI (rules_uri_set_forms: redirect targets too) gives
 * its host, and "mailto:" URIs their address's domain.  Hosts come in the
 * order of the best way they appeared (RULES_URI_ANCHOR first, mail
 * addresses last), message order within one way, each once, at most
 * EVAL_URI_HOSTS_MAX: should a message have more, those left out are the
 * least link-like, never a link behind decoy hosts in the text (reviews
 * rv-today4 and rv-today5: 200 or 500 decoys in message order hid a
 * listed link).  Made once per message (cache slot EVC_URI_HOSTS). */
#ifndef MW_RULES_URI_HOSTS_H
#define MW_RULES_URI_HOSTS_H

#include <stddef.h>
#include "rules/eval.h"

/* as many as the MIME layer keeps URIs (1000 links, 1000 others), with
 * room for redirect targets and text addresses; a host costs a hash
 * lookup per parent domain and list */
#define EVAL_URI_HOSTS_MAX 4000

struct eval_uri_host {
	char host[256];       /* lower case; an address without brackets */
	unsigned cls;         /* RULES_URI_*: the most link-like way it appeared */
	int mailto;           /* seen only as the domain of a mail address */
	int is_ip;            /* an IPv4 or IPv6 address, not a name */
};

struct eval_uri_hosts {
	struct eval_uri_host *v;
	size_t n;
	int truncated;        /* more distinct hosts than EVAL_URI_HOSTS_MAX */
};

const struct eval_uri_hosts *eval_uri_hosts(struct eval_msg *m);

#endif
