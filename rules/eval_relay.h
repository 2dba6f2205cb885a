/* eval_relay.h - the message's relays as SpamAssassin's Received parsing
 * and trust path see them (Mail::SpamAssassin::Message::Metadata::Received):
 * parsed once per message by eval_relay.c, used by its own eval functions
 * and pseudo-headers (X-Spam-Relays-*) and by the network tests (which IPs
 * a DNS blocklist is asked about). */
#ifndef MW_RULES_EVAL_RELAY_H
#define MW_RULES_EVAL_RELAY_H

#include <stddef.h>

struct eval_msg;

struct eval_relay {
	char ip[64];          /* the sending host's address, "" if none */
	char rdns[256];       /* its reverse name as the receiver logged it, "" if none */
	char helo[256];
	char by[256];         /* the receiving host */
	char ident[64];
	char envfrom[320];
	char id[128];
	char auth[64];        /* SMTP AUTH mechanism the receiver noted, "" if none */
	int  ip_private;      /* RFC 1918, loopback, link-local, ULA... */
	int  trusted;
	int  internal;
	int  msa;
	/* added for the eval functions (eval_relay.c) */
	int  no_reverse_dns;  /* the receiver looks names up, and found none */
	int  has_envfrom;     /* envfrom was given (possibly empty: the null sender) */
	int  client_hop;      /* the hop from the SMTP client to us, not a Received field */
};

struct eval_relays {
	struct eval_relay *relay; /* newest first: relay[0] handed the message to us */
	size_t n;
	size_t ntrusted;          /* relay[0 .. ntrusted-1] are trusted */
	size_t ninternal;         /* relay[0 .. ninternal-1] are internal; relay[ninternal]
	                           * is the "last external" one (if ninternal < n) */
	unsigned unparseable;     /* Received fields that could not be parsed */
	/* added: as SpamAssassin's last_trusted_relay_index and
	 * last_internal_relay_index, over the Received fields (topmost 0) */
	int last_trusted_rcvd, last_internal_rcvd;
};

/* the relays of the message being evaluated; never NULL.  When the bridge
 * knows the SMTP client (in->client_ip), the hop from it to us comes first
 * (the Received field our MTA will add). */
const struct eval_relays *eval_relays(struct eval_msg *m);

#endif
