/* Table-driven flag parsing with AMBIENT_* environment fallbacks. */
#include "cmd/flags.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

int flags_parse_duration(const char *s, uint64_t *ms)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1000;

	if (!s || !*s || !isdigit((unsigned char)*s))
		return -E_INVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -E_INVAL;
	if (*end == '\0' || strcmp(end, "s") == 0)
		mul = 1000;
	else if (strcmp(end, "ms") == 0)
		mul = 1;
	else if (strcmp(end, "m") == 0)
		mul = 60000;
	else if (strcmp(end, "h") == 0)
		mul = 3600000;
	else
		return -E_INVAL;
	if (v > UINT64_MAX / mul)
		return -E_INVAL;
	*ms = v * mul;
	return 0;
}

static int set_value(const struct flag *f, const char *val, const char *origin, struct errbuf *eb)
{
	char *end;
	long l;

	switch (f->type) {
	case FLAG_STR: *(const char **)f->target = val; return 0;
	case FLAG_STR_LIST: {
		struct flag_list *lst = f->target;
		if (lst->n == (int)ARRAY_LEN(lst->items))
			return errbuf_set(eb, E_LIMIT, "%s: too many values for --%s", origin,
					  f->name);
		lst->items[lst->n++] = val;
		return 0;
	}
	case FLAG_INT:
		errno = 0;
		l = strtol(val, &end, 10);
		if (errno || end == val || *end || l < INT_MIN || l > INT_MAX)
			return errbuf_set(eb, E_INVAL, "%s: --%s wants an integer, got '%s'",
					  origin, f->name, val);
		*(int *)f->target = (int)l;
		return 0;
	case FLAG_BOOL:
		if (strcmp(val, "true") == 0 || strcmp(val, "1") == 0)
			*(bool *)f->target = true;
		else if (strcmp(val, "false") == 0 || strcmp(val, "0") == 0)
			*(bool *)f->target = false;
		else
			return errbuf_set(eb, E_INVAL, "%s: --%s wants true or false, got '%s'",
					  origin, f->name, val);
		return 0;
	case FLAG_DURATION:
		if (flags_parse_duration(val, f->target) < 0)
			return errbuf_set(eb, E_INVAL,
					  "%s: --%s wants a duration like 250ms, 30s, 5m, got '%s'",
					  origin, f->name, val);
		return 0;
	}
	return errbuf_set(eb, E_INVAL, "flag --%s has no type", f->name);
}

static const struct flag *find(const struct flag *flags, size_t n, const char *name, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0)
			return &flags[i];
	return NULL;
}

static void env_name(const char *flag, char *out, size_t cap)
{
	size_t j = snprintf(out, cap, "AMBIENT_");

	for (const char *c = flag; *c && j + 1 < cap; c++)
		out[j++] = *c == '-' ? '_' : (char)toupper((unsigned char)*c);
	out[j] = '\0';
}

int flags_parse(const struct flag *flags, size_t nflags, int argc, char **argv, const char **pos,
		int maxpos, int *npos, bool *help, struct errbuf *eb)
{
	int r;

	*npos = 0;
	*help = false;
	for (size_t i = 0; i < nflags; i++) {
		char name[96];
		const char *v;
		env_name(flags[i].name, name, sizeof(name));
		v = getenv(name);
		if (!v || !*v)
			continue;
		r = set_value(&flags[i], v, name, eb);
		if (r < 0)
			return r;
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *eq;
		const struct flag *f;
		size_t len;

		if (strcmp(a, "--") == 0) {
			for (i++; i < argc; i++) {
				if (*npos == maxpos)
					return errbuf_set(eb, E_INVAL, "unexpected argument '%s'",
							  argv[i]);
				pos[(*npos)++] = argv[i];
			}
			break;
		}
		if (a[0] != '-' || a[1] == '\0') {
			if (*npos == maxpos)
				return errbuf_set(eb, E_INVAL, "unexpected argument '%s'", a);
			pos[(*npos)++] = a;
			continue;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			*help = true;
			continue;
		}
		a += a[1] == '-' ? 2 : 1;
		eq = strchr(a, '=');
		len = eq ? (size_t)(eq - a) : strlen(a);
		f = find(flags, nflags, a, len);
		if (!f)
			return errbuf_set(eb, E_INVAL, "unknown flag '%s' (see --help)", argv[i]);
		if (f->type == FLAG_BOOL && !eq) {
			*(bool *)f->target = true;
			continue;
		}
		if (!eq && i + 1 >= argc)
			return errbuf_set(eb, E_INVAL, "flag --%s needs a value", f->name);
		r = set_value(f, eq ? eq + 1 : argv[++i], "command line", eb);
		if (r < 0)
			return r;
	}
	return 0;
}

void flags_usage(FILE *out, const char *usage_line, const struct flag *flags, size_t nflags)
{
	fprintf(out, "usage: %s\n\nflags (each also read from AMBIENT_<FLAG>):\n", usage_line);
	for (size_t i = 0; i < nflags; i++) {
		char left[64];
		snprintf(left, sizeof(left), "--%s%s%s", flags[i].name,
			 flags[i].placeholder ? " " : "",
			 flags[i].placeholder ? flags[i].placeholder : "");
		fprintf(out, "  %-28s %s\n", left, flags[i].help);
	}
}
