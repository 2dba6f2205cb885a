/* session.h - one client SMTP session: the state machine that reads the
 * client's commands, relays the envelope live to the upstream, spools the
 * message, asks the scanner, and answers. */
#ifndef MW_SESSION_H
#define MW_SESSION_H

#include <event2/util.h>
#include <sys/socket.h>

struct proxy;
struct listener;
struct session;

/* session_new - take over the accepted socket fd. */
struct session *session_new(struct proxy *px, struct listener *ln, evutil_socket_t fd,
                            const struct sockaddr *sa, int salen);
/* session_shutdown - the daemon is stopping: idle sessions get 421 now,
 * busy ones after their transaction; force = 421 now whatever they do. */
void session_shutdown(struct session *s, int force);
/* session_upstream_holds_message - the whole message went to the upstream
 * (nothing of it left in our buffers) and its reply is awaited: a 421 now
 * would make the client send again what the upstream may have queued */
int session_upstream_holds_message(const struct session *s);
struct session *session_next(const struct session *s);

#endif
