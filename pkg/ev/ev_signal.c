/* Signal delivery through one signalfd per loop, and blocking signals before threads start. */
#include "pkg/ev/ev_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

static bool signo_valid(int signo)
{
	return signo > 0 && signo < _NSIG && signo != SIGKILL && signo != SIGSTOP;
}

int ev_signals_block(const int *signos, size_t n)
{
	sigset_t set;

	sigemptyset(&set);
	for (size_t i = 0; i < n; i++) {
		if (!signo_valid(signos[i]) || sigaddset(&set, signos[i]) < 0)
			return -E_INVAL;
	}
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
		return -E_INVAL;
	return 0;
}

static void sig_cb(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
	struct signalfd_siginfo si[16];
	ssize_t n;

	(void)events;
	for (;;) {
		n = read(io->fd, si, sizeof(si));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				log_error("signalfd read failed", LF_ERR(strerror(errno)));
			ev_io_clear_ready(io, EV_READ);
			return;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(si[0]); i++) {
			int signo = (int)si[i].ssi_signo;
			/* Looked up per signal: a callback may delete handlers or stop the watcher.
			 */
			if (signo > 0 && signo < _NSIG && loop->sigs && loop->sigs[signo].fn)
				loop->sigs[signo].fn(loop, signo, loop->sigs[signo].arg);
		}
		if ((size_t)n < sizeof(si)) {
			/* A short read drained the queue; later arrivals are a new edge. */
			ev_io_clear_ready(io, EV_READ);
			return;
		}
	}
}

int ev_signal_add(struct ev_loop *loop, int signo, ev_signal_fn cb, void *arg)
{
	sigset_t one;
	int fd;

	if (!signo_valid(signo) || !cb)
		return -E_INVAL;
	sigemptyset(&one);
	sigaddset(&one, signo);
	if (pthread_sigmask(SIG_BLOCK, &one, NULL) != 0)
		return -E_INVAL;
	sigaddset(&loop->sig_mask, signo);
	fd = signalfd(loop->sig_fd, &loop->sig_mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0) {
		sigdelset(&loop->sig_mask, signo);
		return -E_IO;
	}
	if (loop->sig_fd < 0) {
		loop->sig_fd = fd;
		ev_io_init(&loop->sig_io, fd, sig_cb);
		if (ev_io_start(loop, &loop->sig_io, EV_READ) < 0) {
			close(fd);
			loop->sig_fd = -1;
			sigdelset(&loop->sig_mask, signo);
			return -E_IO;
		}
	}
	if (!loop->sigs)
		loop->sigs = xcalloc(_NSIG, sizeof(*loop->sigs));
	loop->sigs[signo] = (struct ev_sig){cb, arg};
	return 0;
}

void ev_signal_del(struct ev_loop *loop, int signo)
{
	if (!signo_valid(signo) || !loop->sigs || !loop->sigs[signo].fn)
		return;
	loop->sigs[signo] = (struct ev_sig){0};
	sigdelset(&loop->sig_mask, signo);
	if (signalfd(loop->sig_fd, &loop->sig_mask, 0) < 0)
		log_warn("signalfd update failed", LF_I64("signal", signo),
			 LF_ERR(strerror(errno)));
}

void ev_signals_fini(struct ev_loop *loop)
{
	if (loop->sig_fd >= 0) {
		ev_io_stop(loop, &loop->sig_io);
		close(loop->sig_fd);
		loop->sig_fd = -1;
	}
	free(loop->sigs);
	loop->sigs = NULL;
	sigemptyset(&loop->sig_mask);
}
