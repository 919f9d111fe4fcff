/* ambient_process_* metrics: CPU, memory, file descriptors, threads and uptime, read at scrape
 * time. */
#include "pkg/metrics/metrics_int.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Reads a small /proc file into out (NUL-terminated); returns its length or -1. */
static ssize_t read_small(const char *path, char *out, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, out, cap - 1);
	close(fd);
	if (n < 0)
		return -1;
	out[n] = '\0';
	return n;
}

/* Field `field` (1-based, as in proc(5)) of /proc/self/stat, or NaN. The command name in field 2
 * may hold spaces and parentheses, so counting starts after the last ')'. */
static double self_stat_field(int field)
{
	char text[1024];
	char *p;

	if (read_small("/proc/self/stat", text, sizeof(text)) < 0)
		return NAN;
	p = strrchr(text, ')');
	if (!p)
		return NAN;
	p++;
	for (int f = 3; f <= field; f++) {
		char *end;
		unsigned long long v;
		while (*p == ' ')
			p++;
		if (!*p)
			return NAN;
		if (f == field) {
			v = strtoull(p, &end, 10);
			return end == p ? NAN : (double)v;
		}
		p = strchr(p, ' ');
		if (!p)
			return NAN;
	}
	return NAN;
}

/* Field `idx` (0-based) of /proc/self/statm, in bytes. */
static double statm_bytes(int idx)
{
	char text[256];
	char *p = text;
	unsigned long long pages = 0;

	if (read_small("/proc/self/statm", text, sizeof(text)) < 0)
		return NAN;
	for (int i = 0; i <= idx; i++) {
		char *end;
		pages = strtoull(p, &end, 10);
		if (end == p)
			return NAN;
		p = end;
	}
	return (double)pages * (double)sysconf(_SC_PAGESIZE);
}

static double cpu_seconds(void *ctx)
{
	struct rusage ru;

	(void)ctx;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return NAN;
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	       ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static double resident_bytes(void *ctx)
{
	(void)ctx;
	return statm_bytes(1);
}

static double virtual_bytes(void *ctx)
{
	(void)ctx;
	return statm_bytes(0);
}

static double open_fds(void *ctx)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	double n = 0;

	(void)ctx;
	if (!d)
		return NAN;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}

static double max_fds(void *ctx)
{
	struct rlimit rl;

	(void)ctx;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return NAN;
	return rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur;
}

static double threads(void *ctx)
{
	(void)ctx;
	return self_stat_field(20);
}

static double start_time;
static pthread_once_t start_once = PTHREAD_ONCE_INIT;

/* Boot time (btime in /proc/stat) plus the process's start in clock ticks since boot (stat field
 * 22); the registration time when /proc cannot tell. */
static void start_time_init(void)
{
	char text[8192];
	const char *p;
	double ticks = self_stat_field(22);
	long hz = sysconf(_SC_CLK_TCK);

	start_time = (double)(time_real_ms() / 1000);
	if (read_small("/proc/stat", text, sizeof(text)) < 0 || isnan(ticks) || hz <= 0)
		return;
	p = strstr(text, "\nbtime ");
	if (!p)
		return;
	start_time = (double)strtoull(p + 7, NULL, 10) + ticks / (double)hz;
}

static double start_seconds(void *ctx)
{
	(void)ctx;
	pthread_once(&start_once, start_time_init);
	return start_time;
}

static double uptime_seconds(void *ctx)
{
	(void)ctx;
	pthread_once(&start_once, start_time_init);
	return (double)time_real_ms() / 1000.0 - start_time;
}

int metrics_register_process(struct metrics_registry *r, struct errbuf *eb)
{
	static const struct {
		const char *name;
		const char *help;
		enum metrics_type type;
		metrics_value_fn fn;
	} defs[] = {
		{"ambient_process_cpu_seconds_total", "User and system CPU time spent, in seconds.",
		 METRICS_COUNTER, cpu_seconds},
		{"ambient_process_resident_memory_bytes", "Resident memory size in bytes.",
		 METRICS_GAUGE, resident_bytes},
		{"ambient_process_virtual_memory_bytes", "Virtual memory size in bytes.",
		 METRICS_GAUGE, virtual_bytes},
		{"ambient_process_open_fds", "Number of open file descriptors.", METRICS_GAUGE,
		 open_fds},
		{"ambient_process_max_fds", "Limit on open file descriptors.", METRICS_GAUGE,
		 max_fds},
		{"ambient_process_threads", "Number of OS threads.", METRICS_GAUGE, threads},
		{"ambient_process_start_time_seconds",
		 "Start time of the process since the Unix epoch, in seconds.", METRICS_GAUGE,
		 start_seconds},
		{"ambient_process_uptime_seconds", "Seconds since the process started.",
		 METRICS_GAUGE, uptime_seconds},
	};

	pthread_once(&start_once, start_time_init);
	for (size_t i = 0; i < ARRAY_LEN(defs); i++) {
		const struct metrics_def d = {
			.name = defs[i].name,
			.help = defs[i].help,
			.type = defs[i].type,
			.fn = defs[i].fn,
		};
		int rc = metrics_register(r, &d, NULL, eb);
		if (rc < 0)
			return rc;
	}
	return 0;
}
