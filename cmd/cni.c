/* `ambient cni`: the node agent, the add|del|list|check CLI for hosts without Kubernetes (it
 * talks to the agent's control socket), host mode, and the CNI plugin when CNI_COMMAND is set. */
#include "cmd/cni.h"
#include "cmd/cmd.h"
#include "cmd/flags.h"
#include "pkg/buf/buf.h"
#include "pkg/json/json.h"
#include "pkg/net/net.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static const char cni_usage[] =
	"usage: ambient cni <command> [flags]\n\n"
	"commands:\n"
	"  agent   the node agent: serves ZDS to ztunnel and the control socket\n"
	"  add     --netns PATH|--pid PID|--host --workload UID [--name N] [--namespace NS]\n"
	"          [--service-account SA] [--exclude-inbound-ports P,..] [--force] [--dry-run]\n"
	"  del     --workload UID\n"
	"  list    [-o json]\n"
	"  check   [--workload UID]   exits 1 when rules drifted or ztunnel is not connected\n\n"
	"With CNI_COMMAND set in the environment the binary acts as a chained CNI plugin.\n";

/* ---- control-socket client ------------------------------------------------------------------- */

int cni_ctl_call(const char *path, const struct cniconf_request *req, struct cniconf_reply *reply,
		 struct errbuf *eb)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = CNI_CTL_TIMEOUT_MS / 1000};
	struct buf out;
	char peek;
	char *p = NULL;
	ssize_t len;
	int fd = -1, rc;

	memset(reply, 0, sizeof(*reply));
	buf_init(&out, CNI_CTL_MAX);
	if (strlen(path) >= sizeof(sa.sun_path)) {
		rc = errbuf_set(eb, E_INVAL, "control socket path too long: %s", path);
		goto done;
	}
	if (cniconf_request_encode(req, &out) < 0) {
		rc = errbuf_set(eb, E_LIMIT, "control request too large");
		goto done;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = errbuf_set(eb, E_IO, "socket: %s", strerror(errno));
		goto done;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = errbuf_set(eb, E_CLOSED,
				"cannot reach the cni agent at %s: %s (is `ambient cni agent` "
				"running?)",
				path, strerror(errno));
		goto done;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (send(fd, buf_rptr(&out), buf_len(&out), MSG_NOSIGNAL) != (ssize_t)buf_len(&out)) {
		rc = errbuf_set(eb, E_IO, "cni agent at %s: send: %s", path, strerror(errno));
		goto done;
	}
	len = recv(fd, &peek, 1, MSG_PEEK | MSG_TRUNC);
	if (len <= 0) {
		rc = errbuf_set(eb, len == 0 ? E_CLOSED : E_IO, "cni agent at %s: no reply: %s",
				path,
				len == 0	  ? "connection closed"
				: errno == EAGAIN ? "timed out"
						  : strerror(errno));
		goto done;
	}
	p = xmalloc((size_t)len);
	if (recv(fd, p, (size_t)len, 0) != len) {
		rc = errbuf_set(eb, E_IO, "cni agent at %s: short reply", path);
		goto done;
	}
	if ((rc = cniconf_reply_decode(p, (size_t)len, reply, eb)) < 0) {
		errbuf_prefix(eb, "cni agent at %s", path);
		eb->code = E_PROTO;
		rc = -E_PROTO;
	}
done:
	free(p);
	if (fd >= 0)
		close(fd);
	buf_fini(&out);
	return rc;
}

bool cni_is_netns(int fd)
{
	return ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET;
}

/* Sends req, prints an error reply. Returns 0 and the reply, or the exit status (1). */
static int call(const char *ctl, const struct cniconf_request *req, struct cniconf_reply *reply,
		const char *what)
{
	struct errbuf eb;

	if (cni_ctl_call(ctl, req, reply, &eb) < 0) {
		fprintf(stderr, "cni %s: %s\n", what, eb.msg);
		return 1;
	}
	if (reply->ok)
		return 0;
	fprintf(stderr, "cni %s: %s\n", what,
		reply->error ? reply->error : "the agent refused the request");
	cniconf_reply_fini(reply);
	return 1;
}

/* ---- host mode: the operator's SSH port ------------------------------------------------------ */

static bool port_in(uint16_t p, const uint16_t *ports, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ports[i] == p)
			return true;
	return false;
}

/* Local TCP listeners on port 22 (state 0A) in the caller's netns. */
static bool ssh_listening(void)
{
	static const char *const files[] = {"/proc/net/tcp", "/proc/net/tcp6"};

	for (size_t i = 0; i < ARRAY_LEN(files); i++) {
		FILE *f = fopen(files[i], "re");
		char line[512];

		if (!f)
			continue;
		while (fgets(line, sizeof(line), f)) {
			char local[128], remote[128], st[8];
			char *colon;

			if (sscanf(line, "%*s %127s %127s %7s", local, remote, st) != 3)
				continue;
			colon = strrchr(local, ':');
			if (colon && strcmp(st, "0A") == 0 && strtol(colon + 1, NULL, 16) == 22) {
				fclose(f);
				return true;
			}
		}
		fclose(f);
	}
	return false;
}

/* Refuses when the SSH port of this session ($SSH_CONNECTION) or a port-22 listener would be
 * redirected to ztunnel: the operator would lose the way in. */
static int ssh_guard(const uint16_t *excl, size_t n, struct errbuf *eb)
{
	const char *sc = getenv("SSH_CONNECTION");
	unsigned cport, sport;
	char cip[64], sip[64];

	if (sc && sscanf(sc, "%63s %u %63s %u", cip, &cport, sip, &sport) == 4 && sport > 0 &&
	    sport < 65536 && !port_in((uint16_t)sport, excl, n))
		return errbuf_set(
			eb, E_DENIED,
			"refusing host mode: inbound TCP port %u carries this SSH session "
			"($SSH_CONNECTION) and would be redirected to ztunnel; add "
			"--exclude-inbound-ports %u, or --force to apply anyway",
			sport, sport);
	if (!port_in(22, excl, n) && ssh_listening())
		return errbuf_set(
			eb, E_DENIED,
			"refusing host mode: sshd listens on TCP port 22 and it would be "
			"redirected to ztunnel; add --exclude-inbound-ports 22, or --force "
			"to apply anyway");
	return 0;
}

/* The agent must be able to reopen the netns after its own restart, so host mode names the
 * caller's netns by a path that outlives this command: /proc/1/ns/net or /var/run/netns/X. */
static int host_netns_path(char *out, size_t cap, struct errbuf *eb)
{
	struct stat self, st;
	DIR *d;
	struct dirent *de;

	if (stat("/proc/self/ns/net", &self) < 0)
		return errbuf_set(eb, E_IO, "/proc/self/ns/net: %s", strerror(errno));
	if (stat("/proc/1/ns/net", &st) == 0 && st.st_ino == self.st_ino) {
		snprintf(out, cap, "/proc/1/ns/net");
		return 0;
	}
	d = opendir("/var/run/netns");
	while (d && (de = readdir(d))) {
		char p[CNI_PATH_MAX];

		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "/var/run/netns/%s", de->d_name);
		if (stat(p, &st) == 0 && st.st_ino == self.st_ino && st.st_dev == self.st_dev) {
			snprintf(out, cap, "%s", p);
			closedir(d);
			return 0;
		}
	}
	if (d)
		closedir(d);
	return errbuf_set(eb, E_NOTFOUND,
			  "host mode: this netns has no lasting path (neither /proc/1/ns/net nor "
			  "/var/run/netns/*); use --netns PATH");
}

/* ---- add ------------------------------------------------------------------------------------- */

struct add_args {
	const char *netns, *pid, *uid, *name, *ns, *sa, *ctl, *excl;
	bool host, force, dry_run;
	uint16_t ports[REDIRECT_MAX_EXCLUDE];
	size_t nports;
	char path[CNI_PATH_MAX];
};

static int add_dry_run(struct add_args *x)
{
	struct redirect_opts o = {0};
	struct buf b;
	int fd = open(x->path, O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		o.ipv6 = redirect_netns_has_ipv6(fd);
		close(fd);
	}
	memcpy(o.exclude_inbound, x->ports, sizeof(x->ports));
	o.n_exclude_inbound = x->nports;
	buf_init(&b, 0);
	redirect_dry_run(&o, &b);
	fwrite(buf_rptr(&b), 1, buf_len(&b), stdout);
	buf_fini(&b);
	return 0;
}

/* Copies a flag's value into a request field; exit status 2 when it does not fit. */
static int req_str(char *dst, size_t cap, const char *v, const char *flag, const char *what)
{
	if (!v)
		v = "";
	if (strlen(v) >= cap) {
		fprintf(stderr, "cni %s: %s: longer than %zu bytes\n", what, flag, cap - 1);
		return 2;
	}
	memcpy(dst, v, strlen(v) + 1);
	return 0;
}

static int add_send(struct add_args *x)
{
	struct cniconf_request req = {.op = CNICONF_OP_ADD};
	struct cniconf_entry *e = &req.e;
	struct cniconf_reply reply;
	int rc;

	if ((rc = req_str(e->uid, sizeof(e->uid), x->uid, "--workload", "add")) ||
	    (rc = req_str(e->netns, sizeof(e->netns), x->path, "--netns", "add")) ||
	    (rc = req_str(e->name, sizeof(e->name), x->name, "--name", "add")) ||
	    (rc = req_str(e->namespace_, sizeof(e->namespace_), x->ns, "--namespace", "add")) ||
	    (rc = req_str(e->service_account, sizeof(e->service_account), x->sa,
			  "--service-account", "add")))
		return rc;
	e->host = x->host;
	memcpy(e->exclude, x->ports, sizeof(e->exclude));
	e->n_exclude = x->nports;
	rc = call(x->ctl, &req, &reply, "add");
	if (rc == 0)
		printf("enrolled workload %s (netns %s%s)\n", x->uid, x->path,
		       reply.ipv6 ? ", IPv4+IPv6" : "");
	cniconf_reply_fini(&reply);
	return rc;
}

static int cni_add_main(int argc, char **argv)
{
	struct add_args x = {.ctl = CNI_DEFAULT_CONTROL};
	const struct flag f[] = {
		{"netns", FLAG_STR, &x.netns, "the workload's netns (/var/run/netns/X)", "PATH"},
		{"pid", FLAG_STR, &x.pid, "a process in the workload's netns (/proc/PID/ns/net)",
		 "PID"},
		{"host", FLAG_BOOL, &x.host, "host mode: this machine's own netns is the workload",
		 NULL},
		{"workload", FLAG_STR, &x.uid, "workload uid (as in the mesh config)", "UID"},
		{"name", FLAG_STR, &x.name, "workload name", "NAME"},
		{"namespace", FLAG_STR, &x.ns, "workload namespace", "NS"},
		{"service-account", FLAG_STR, &x.sa, "workload service account", "SA"},
		{"exclude-inbound-ports", FLAG_STR, &x.excl,
		 "inbound TCP ports never redirected (e.g. 22)", "P,.."},
		{"force", FLAG_BOOL, &x.force, "host mode: apply even if SSH would be redirected",
		 NULL},
		{"dry-run", FLAG_BOOL, &x.dry_run,
		 "print the ruleset in nft syntax; change nothing", NULL},
		{"control-socket", FLAG_STR, &x.ctl, "the agent's control socket", "PATH"},
	};
	const char *pos[1];
	struct errbuf eb;
	bool help;
	int npos, nsrc;

	if (flags_parse(f, ARRAY_LEN(f), argc, argv, pos, 0, &npos, &help, &eb) < 0) {
		fprintf(stderr, "cni add: %s\n", eb.msg);
		return 2;
	}
	if (help) {
		flags_usage(stdout, "ambient cni add --netns PATH|--pid PID|--host --workload UID",
			    f, ARRAY_LEN(f));
		return 0;
	}
	if (x.excl &&
	    cniconf_ports_parse(x.excl, x.ports, REDIRECT_MAX_EXCLUDE, &x.nports, &eb) < 0) {
		fprintf(stderr, "cni add: --exclude-inbound-ports %s\n", eb.msg);
		return 2;
	}
	nsrc = (x.netns != NULL) + (x.pid != NULL) + x.host;
	if (nsrc > 1 || (nsrc == 0 && !x.dry_run)) {
		fprintf(stderr, "cni add: give exactly one of --netns PATH, --pid PID or --host\n");
		return 2;
	}
	if (x.pid) {
		char *end;
		long v = strtol(x.pid, &end, 10);

		if (end == x.pid || *end || v <= 0) {
			fprintf(stderr, "cni add: --pid wants a process id, got '%s'\n", x.pid);
			return 2;
		}
		snprintf(x.path, sizeof(x.path), "/proc/%ld/ns/net", v);
	} else if (x.netns) {
		snprintf(x.path, sizeof(x.path), "%s", x.netns);
	}
	if (x.host && !x.force && ssh_guard(x.ports, x.nports, &eb) < 0) {
		if (!x.dry_run) {
			fprintf(stderr, "cni add: %s\n", eb.msg);
			return 1;
		}
		fprintf(stderr, "cni add: warning: %s\n", eb.msg);
	}
	if (x.host && host_netns_path(x.path, sizeof(x.path), &eb) < 0 && !x.dry_run) {
		fprintf(stderr, "cni add: %s\n", eb.msg);
		return 1;
	}
	if (x.dry_run)
		return add_dry_run(&x);
	if (!x.uid || !*x.uid) {
		fprintf(stderr, "cni add: --workload UID is required\n");
		return 2;
	}
	if (x.path[0] != '/') {
		fprintf(stderr, "cni add: --netns must be an absolute path, got '%s'\n", x.path);
		return 2;
	}
	{
		int fd = open(x.path, O_RDONLY | O_CLOEXEC);

		if (fd < 0) {
			fprintf(stderr, "cni add: netns %s: %s\n", x.path, strerror(errno));
			return 1;
		}
		if (!cni_is_netns(fd)) {
			close(fd);
			fprintf(stderr, "cni add: %s is not a network namespace\n", x.path);
			return 1;
		}
		close(fd);
	}
	return add_send(&x);
}

/* ---- del, list, check ------------------------------------------------------------------------ */

static int simple_flags(const char *usage, const struct flag *f, size_t n, int argc, char **argv,
			const char *what)
{
	const char *pos[1];
	struct errbuf eb;
	bool help;
	int npos;

	if (flags_parse(f, n, argc, argv, pos, 0, &npos, &help, &eb) < 0) {
		fprintf(stderr, "cni %s: %s\n", what, eb.msg);
		return 2;
	}
	if (help) {
		flags_usage(stdout, usage, f, n);
		return -1;
	}
	return 0;
}

/* A del or check request for uid (NULL: every workload); exit status 2 when uid is too long. */
static int op_request(struct cniconf_request *req, enum cniconf_op op, const char *uid,
		      const char *what)
{
	memset(req, 0, sizeof(*req));
	req->op = op;
	return req_str(req->e.uid, sizeof(req->e.uid), uid, "--workload", what);
}

static int cni_del_main(int argc, char **argv)
{
	const char *uid = NULL, *ctl = CNI_DEFAULT_CONTROL;
	const struct flag f[] = {
		{"workload", FLAG_STR, &uid, "workload uid", "UID"},
		{"control-socket", FLAG_STR, &ctl, "the agent's control socket", "PATH"},
	};
	struct cniconf_request req;
	struct cniconf_reply reply;
	int rc = simple_flags("ambient cni del --workload UID", f, ARRAY_LEN(f), argc, argv, "del");

	if (rc)
		return rc < 0 ? 0 : rc;
	if (!uid || !*uid) {
		fprintf(stderr, "cni del: --workload UID is required\n");
		return 2;
	}
	if ((rc = op_request(&req, CNICONF_OP_DEL, uid, "del")))
		return rc;
	rc = call(ctl, &req, &reply, "del");
	if (rc == 0)
		printf(reply.removed ? "removed workload %s\n" : "workload %s was not enrolled\n",
		       uid);
	cniconf_reply_fini(&reply);
	return rc;
}

static void age(int64_t ms, char *out, size_t cap)
{
	int64_t s = (time_real_ms() - ms) / 1000;

	if (ms <= 0)
		snprintf(out, cap, "-");
	else if (s < 120)
		snprintf(out, cap, "%llds", (long long)(s < 0 ? 0 : s));
	else if (s < 7200)
		snprintf(out, cap, "%lldm", (long long)(s / 60));
	else if (s < 172800)
		snprintf(out, cap, "%lldh", (long long)(s / 3600));
	else
		snprintf(out, cap, "%lldd", (long long)(s / 86400));
}

static const char *dash(const char *s)
{
	return *s ? s : "-";
}

static int cni_list_main(int argc, char **argv)
{
	const char *ctl = CNI_DEFAULT_CONTROL, *out = NULL;
	const struct flag f[] = {
		{"output", FLAG_STR, &out, "json for the agent's full records", "FORMAT"},
		{"o", FLAG_STR, &out, "short for --output", "FORMAT"},
		{"control-socket", FLAG_STR, &ctl, "the agent's control socket", "PATH"},
	};
	struct cniconf_request req = {.op = CNICONF_OP_LIST};
	struct cniconf_reply reply;
	struct buf b;
	int rc = simple_flags("ambient cni list [-o json]", f, ARRAY_LEN(f), argc, argv, "list");

	if (rc)
		return rc < 0 ? 0 : rc;
	if (out && strcmp(out, "json") != 0 && strcmp(out, "table") != 0) {
		fprintf(stderr, "cni list: -o wants json or table, got '%s'\n", out);
		return 2;
	}
	if ((rc = call(ctl, &req, &reply, "list")))
		return rc;
	if (out && strcmp(out, "json") == 0) {
		struct json_writer w;

		buf_init(&b, 0);
		json_writer_init(&w, &b, 2);
		json_write_cjson(&w, reply.workloads);
		json_writer_finish(&w);
		printf("%.*s\n", (int)buf_len(&b), (const char *)buf_rptr(&b));
		buf_fini(&b);
	} else {
		printf("%-36s %-16s %-20s %-16s %-28s %s\n", "UID", "NAMESPACE", "NAME",
		       "SERVICE ACCOUNT", "NETNS", "ENROLLED");
		for (size_t i = 0; i < reply.n_rows; i++) {
			const struct cniconf_row *r = &reply.rows[i];
			char a[16];

			age(r->enrolled_ms, a, sizeof(a));
			printf("%-36s %-16s %-20s %-16s %-28s %s\n", r->uid, dash(r->namespace_),
			       dash(r->name), dash(r->service_account), r->netns, a);
		}
	}
	cniconf_reply_fini(&reply);
	return 0;
}

static int cni_check_main(int argc, char **argv)
{
	const char *uid = NULL, *ctl = CNI_DEFAULT_CONTROL;
	const struct flag f[] = {
		{"workload", FLAG_STR, &uid, "check only this workload", "UID"},
		{"control-socket", FLAG_STR, &ctl, "the agent's control socket", "PATH"},
	};
	struct cniconf_request req;
	struct cniconf_reply reply;
	size_t bad = 0, n = 0;
	bool zt;
	int rc = simple_flags("ambient cni check [--workload UID]", f, ARRAY_LEN(f), argc, argv,
			      "check");

	if (rc)
		return rc < 0 ? 0 : rc;
	if ((rc = op_request(&req, CNICONF_OP_CHECK, uid, "check")))
		return rc;
	if ((rc = call(ctl, &req, &reply, "check")))
		return rc;
	zt = reply.ztunnel_connected;
	for (size_t i = 0; i < reply.n_rows; i++) {
		const struct cniconf_row *r = &reply.rows[i];

		n++;
		if (r->ok) {
			printf("ok     %s (%s)\n", r->uid, r->netns);
			continue;
		}
		bad++;
		printf("DRIFT  %s (%s): %s\n", r->uid, r->netns, r->error ? r->error : "");
	}
	printf("ztunnel: %s\n", zt ? "connected" : "NOT connected");
	cniconf_reply_fini(&reply);
	if (bad) {
		fprintf(stderr, "cni check: %zu of %zu workloads drifted\n", bad, n);
		return 1;
	}
	if (!zt && n) {
		fprintf(stderr, "cni check: no ztunnel is connected: enrolled workloads have "
				"no proxy\n");
		return 1;
	}
	return 0;
}

int cmd_cni(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : NULL;

	/* CNI spec §3: the runtime sets CNI_COMMAND and passes no arguments. */
	if (getenv("CNI_COMMAND"))
		return cni_plugin_main();
	if (!sub) {
		fputs(cni_usage, stderr);
		return 2;
	}
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
		fputs(cni_usage, stdout);
		return 0;
	}
	if (strcmp(sub, "agent") == 0)
		return cni_agent_main(argc - 1, argv + 1);
	if (strcmp(sub, "add") == 0)
		return cni_add_main(argc - 1, argv + 1);
	if (strcmp(sub, "del") == 0)
		return cni_del_main(argc - 1, argv + 1);
	if (strcmp(sub, "list") == 0)
		return cni_list_main(argc - 1, argv + 1);
	if (strcmp(sub, "check") == 0)
		return cni_check_main(argc - 1, argv + 1);
	fprintf(stderr, "cni: unknown command '%s'\n\n%s", sub, cni_usage);
	return 2;
}
