/* The CNI plugin (CNI spec 1.0.0, chained after the primary plugin): with CNI_COMMAND set, reads
 * the network configuration on stdin and enrolls ambient pods through the node agent. */
#include "cmd/cni.h"
#include "pkg/buf/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STDIN_MAX ((size_t)1 << 20)

struct plugin {
	enum cniconf_command command;
	const char *command_name;
	const char *version; /* the netconf's cniVersion, once known */
	struct cniconf_netconf nc;
	const char *ctl;
	const char *netns, *container, *ifname;
	struct cniconf_args args;
	char uid[CNICONF_STR_MAX + 1];
	bool enroll;
};

static void emit(struct buf *b)
{
	fwrite(buf_rptr(b), 1, buf_len(b), stdout);
	fputc('\n', stdout);
	fflush(stdout);
}

/* The result of a failed command is this JSON on stdout and a non-zero exit (spec §"Error"). */
static int fail(const struct plugin *p, int code, const char *msg, const char *details)
{
	struct buf b;

	buf_init(&b, 0);
	cniconf_error_result_encode(p->version, code, msg, details, &b);
	emit(&b);
	buf_fini(&b);
	fprintf(stderr, "ambient cni plugin: %s%s%s\n", msg, details && *details ? ": " : "",
		details ? details : "");
	return 1;
}

static int cmd_version_out(void)
{
	struct buf b;

	buf_init(&b, 0);
	cniconf_version_result_encode(&b);
	emit(&b);
	buf_fini(&b);
	return 0;
}

/* ADD's result for a chained plugin: prevResult unchanged, in the netconf's version. */
static int pass_through(const struct plugin *p)
{
	struct buf b;

	buf_init(&b, 0);
	cniconf_prev_result_encode(&p->nc, &b);
	emit(&b);
	buf_fini(&b);
	return 0;
}

static int read_stdin(struct buf *b)
{
	ssize_t r;

	while ((r = buf_read_fd(b, 0, 0)) > 0)
		;
	return r < 0 ? -1 : 0;
}

static int agent_error(const struct plugin *p, int rc, const char *msg)
{
	if (rc == -E_CLOSED || rc == -E_IO || rc == -E_PROTO)
		return fail(p, CNICONF_E_TRY_LATER, "the ambient cni agent is not reachable", msg);
	if (strcmp(msg, CNI_ERR_NO_ZTUNNEL) == 0)
		return fail(p, CNICONF_E_TRY_LATER, CNI_ERR_NO_ZTUNNEL,
			    "ztunnel is not connected to the ambient cni agent; retry later");
	return fail(p, CNICONF_E_OTHER, "ambient enrollment failed", msg);
}

/* Returns 0 with the reply when the agent said ok; else the agent's error text in err. */
static int ask(const struct plugin *p, enum cniconf_op op, struct cniconf_reply *reply, char *err,
	       size_t cap)
{
	struct cniconf_request req = {.op = op};
	struct errbuf eb;
	int rc;

	memcpy(req.e.uid, p->uid, sizeof(req.e.uid));
	if (op == CNICONF_OP_ADD) {
		snprintf(req.e.netns, sizeof(req.e.netns), "%s", p->netns);
		memcpy(req.e.name, p->args.pod_name, sizeof(req.e.name));
		memcpy(req.e.namespace_, p->args.pod_namespace, sizeof(req.e.namespace_));
		memcpy(req.e.service_account, p->args.pod_service_account,
		       sizeof(req.e.service_account));
		memcpy(req.e.exclude, p->nc.exclude, sizeof(req.e.exclude));
		req.e.n_exclude = p->nc.n_exclude;
	}
	rc = cni_ctl_call(p->ctl, &req, reply, &eb);
	if (rc < 0) {
		snprintf(err, cap, "%s", eb.msg);
		return rc;
	}
	if (reply->ok)
		return 0;
	snprintf(err, cap, "%s", reply->error ? reply->error : "refused");
	cniconf_reply_fini(reply);
	return -E_DENIED;
}

static int do_add(struct plugin *p)
{
	struct cniconf_reply reply;
	char err[ERRBUF_SIZE];
	int rc;

	if (!p->enroll)
		return pass_through(p);
	if (!p->netns || !*p->netns)
		return fail(p, CNICONF_E_INVALID_ENV, "CNI_NETNS is required for ADD", NULL);
	if (strlen(p->netns) >= CNICONF_PATH_MAX)
		return fail(p, CNICONF_E_INVALID_ENV, "CNI_NETNS is too long", NULL);
	rc = ask(p, CNICONF_OP_ADD, &reply, err, sizeof(err));
	cniconf_reply_fini(&reply);
	if (rc < 0)
		return agent_error(p, rc, err);
	return pass_through(p);
}

/* DEL must succeed when there is nothing (left) to delete (spec §"DEL"): an unknown uid, a
 * netns already gone, even an agent that is down (the rules die with the netns and the agent
 * drops the entry when it cannot reopen it). */
static int do_del(struct plugin *p)
{
	struct cniconf_reply reply;
	char err[ERRBUF_SIZE];
	int rc = ask(p, CNICONF_OP_DEL, &reply, err, sizeof(err));

	cniconf_reply_fini(&reply);
	if (rc < 0 && p->enroll)
		fprintf(stderr, "ambient cni plugin: DEL %s: %s (ignored)\n", p->uid, err);
	return 0;
}

static int do_check(struct plugin *p)
{
	struct cniconf_reply reply;
	char err[ERRBUF_SIZE];
	int rc;

	if (!p->enroll)
		return 0;
	rc = ask(p, CNICONF_OP_CHECK, &reply, err, sizeof(err));
	if (rc < 0)
		return agent_error(p, rc, err);
	rc = 0;
	for (size_t i = 0; i < reply.n_rows; i++)
		if (!reply.rows[i].ok) {
			rc = fail(p, CNICONF_E_OTHER, "ambient redirection drifted",
				  reply.rows[i].error);
			break;
		}
	if (rc == 0 && !reply.ztunnel_connected)
		rc = fail(p, CNICONF_E_TRY_LATER, CNI_ERR_NO_ZTUNNEL, NULL);
	cniconf_reply_fini(&reply);
	return rc;
}

static int run(struct plugin *p)
{
	static const char *const what[] = {
		[CNICONF_E_DECODE] = "cannot decode the network configuration",
		[CNICONF_E_INCOMPATIBLE] = "incompatible CNI version",
		[CNICONF_E_INVALID_NETCONF] = "invalid network configuration",
	};
	struct buf in;
	struct errbuf eb;
	int rc, code;

	if (p->command == CNICONF_CMD_VERSION)
		return cmd_version_out();
	if (p->command == CNICONF_CMD_UNKNOWN)
		return fail(p, CNICONF_E_INVALID_ENV, "unknown CNI_COMMAND", p->command_name);
	buf_init(&in, STDIN_MAX);
	if (read_stdin(&in) < 0) {
		buf_fini(&in);
		return fail(p, CNICONF_E_DECODE, "cannot read the network configuration on stdin",
			    "larger than 1 MiB or unreadable");
	}
	rc = cniconf_netconf_decode((const char *)buf_rptr(&in), buf_len(&in), &p->nc, &eb);
	buf_fini(&in);
	p->version = p->nc.version;
	if (rc < 0) {
		code = cniconf_netconf_error_code(rc);
		return fail(p, code, what[code], eb.msg);
	}
	if (p->nc.control_socket)
		p->ctl = p->nc.control_socket;
	p->enroll = p->nc.enroll;
	if (!p->container || !*p->container)
		return fail(p, CNICONF_E_INVALID_ENV, "CNI_CONTAINERID is required", NULL);
	if (!p->ifname || !*p->ifname)
		return fail(p, CNICONF_E_INVALID_ENV, "CNI_IFNAME is required", NULL);
	if (cniconf_args_parse(getenv("CNI_ARGS"), &p->args, &eb) < 0)
		return fail(p, CNICONF_E_INVALID_ENV, "invalid CNI_ARGS", eb.msg);
	cniconf_uid_choose(&p->args, p->container, p->uid);
	if (p->command == CNICONF_CMD_ADD)
		return do_add(p);
	if (p->command == CNICONF_CMD_DEL)
		return do_del(p);
	return do_check(p);
}

int cni_plugin_main(void)
{
	struct plugin p = {
		.command_name = getenv("CNI_COMMAND"),
		.ctl = CNI_DEFAULT_CONTROL,
		.netns = getenv("CNI_NETNS"),
		.container = getenv("CNI_CONTAINERID"),
		.ifname = getenv("CNI_IFNAME"),
	};
	int rc;

	p.command = cniconf_command_parse(p.command_name);
	/* stdout carries only the result; logs go to stderr (the runtime records it). */
	log_set_level(LOG_WARN);
	rc = run(&p);
	cniconf_netconf_fini(&p.nc);
	return rc;
}
