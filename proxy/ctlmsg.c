/* ctlmsg.c - see ctlmsg.h */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "ctlmsg.h"
#include "log.h"

int ctl_pair(int sv[2])
{
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	int fl = fcntl(sv[1], F_GETFL);
	if (fl < 0 || fcntl(sv[1], F_SETFL, fl | O_NONBLOCK) < 0) {
		int e = errno;
		close(sv[0]);
		close(sv[1]);
		errno = e;
		return -1;
	}
	return 0;
}

int ctl_send(int fd, const struct ctl_msg *m, int pass_fd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct iovec iov = { .iov_base = (void *)m, .iov_len = sizeof *m };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (pass_fd >= 0) {
		memset(&u, 0, sizeof u);
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof u.buf;
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
	}
	for (;;) {
		/* MSG_NOSIGNAL: a front end gone is EPIPE here, not a signal */
		ssize_t n = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n == (ssize_t)sizeof *m) return 0;
		if (n < 0 && errno == EINTR) continue;
		if (n >= 0) errno = EMSGSIZE;    /* a packet is all or nothing */
		return -1;
	}
}

ssize_t ctl_recv(int fd, struct ctl_msg *m, int *got_fd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(4 * sizeof(int))];
	} u;
	struct iovec iov = { .iov_base = m, .iov_len = sizeof *m };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
	                     .msg_controllen = sizeof u.buf };
	ssize_t n;

	*got_fd = -1;
	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0) return -1;
	int nfds = 0, fds[4];
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k && nfds < 4; i++)
			memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}
	if (nfds == 1 && !(mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC))) {
		*got_fd = fds[0];
		return n;
	}
	for (int i = 0; i < nfds; i++) close(fds[i]);
	if (mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) {
		errno = EMSGSIZE;
		return -1;
	}
	return n;
}

struct config *ctl_config(int cfd, const char *prefix)
{
	char err[512];
	struct config *c = NULL;

	if (cfd < 0)
		snprintf(err, sizeof err, "no config came with the message");
	else {
		c = config_import(cfd, err, sizeof err);
		close(cfd);
	}
	if (c == NULL)
		slog(NULL, LOG_ERR, "%sreload failed, keeping the running config: %s", prefix, err);
	return c;
}
