/* ztunnel's side of the ZDS lock-step rules (reference ztunnel-and-cni.md §7.3), without I/O.
 *
 *              Add(fd) / Keep / Del                Add(fd) / Del
 *            +-------------------+               +--------------+
 *            v                   |               v              |
 *   connected: SNAPSHOT ---------+--SnapshotSent--> STEADY -------+
 *                                                   Keep, SnapshotSent: -E_PROTO
 *
 * In both states an Add needs exactly its netns fd, every other request must come without one,
 * and Add/Keep/Del must name a uid. A refused request leaves the session unchanged.
 */
#include "pkg/inpod/inpod.h"

int inpod_session_check(struct inpod_session *s, const struct inpod_request *r, bool has_fd,
			struct errbuf *eb)
{
	const char *t = inpod_type_name(r->type);

	switch (r->type) {
	case INPOD_ADD:
	case INPOD_DEL:
	case INPOD_SNAPSHOT_SENT:
	case INPOD_KEEP: break;
	default: return errbuf_set(eb, E_PROTO, "unknown request type %d", (int)r->type);
	}
	if (r->type != INPOD_SNAPSHOT_SENT && !r->uid[0])
		return errbuf_set(eb, E_PROTO, "%s with an empty uid", t);
	if (r->type == INPOD_ADD && !has_fd)
		return errbuf_set(eb, E_PROTO, "Add %s without a netns fd", r->uid);
	if (r->type != INPOD_ADD && has_fd)
		return errbuf_set(eb, E_PROTO, "%s carries an fd (only Add may)", t);
	if (r->type == INPOD_KEEP && s->snapshot_sent)
		return errbuf_set(eb, E_PROTO, "Keep %s after SnapshotSent", r->uid);
	if (r->type == INPOD_SNAPSHOT_SENT && s->snapshot_sent)
		return errbuf_set(eb, E_PROTO, "second SnapshotSent");
	if (r->type == INPOD_SNAPSHOT_SENT)
		s->snapshot_sent = true;
	return 0;
}
