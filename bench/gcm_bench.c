/* AES-GCM record micro-benchmark (bench/gcm.sh builds and runs it): BearSSL's GCM record classes
 * with its AES-NI CTR and PCLMUL GHASH against pkg/tls/tls_gcm.c's one-pass classes (128-bit
 * loop, and the 256-bit VAES loop when the CPU has it), sealing and opening records of a few
 * sizes. Reports MB per CPU-second (thread CPU time, so time stolen by other processes on a
 * shared machine does not count), best of REPS runs of 0.1 s each. */
#include "pkg/tls/tls_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double cpu_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static br_ssl_engine_context eng; /* only its record slots are used */
static unsigned char rec[16384 + 64];

/* MB/s of sealing (open = false) or opening records of n bytes; opening works on whatever the
 * buffer holds (the work does not depend on the tag being right). */
static double run(const br_sslrec_in_gcm_class *ic, const br_sslrec_out_gcm_class *oc, bool open,
		  size_t n)
{
	static const unsigned char key[16] = {1, 2, 3, 4}, iv[4] = {5, 6, 7, 8};
	const br_sslrec_in_class **in = &eng.in.vtable;
	const br_sslrec_out_class **out = &eng.out.vtable;
	double t0, t;
	long recs = 0;

	ic->init(&eng.in.gcm.vtable.in, br_aes_x86ni_ctr_get_vtable(), key, 16,
		 br_ghash_pclmul_get(), iv);
	oc->init(&eng.out.gcm.vtable.out, br_aes_x86ni_ctr_get_vtable(), key, 16,
		 br_ghash_pclmul_get(), iv);
	memset(rec, 0x5a, sizeof(rec));
	t0 = cpu_now();
	do {
		for (int i = 0; i < 32; i++) {
			size_t len = open ? n + 24 : n;

			if (open)
				(*in)->decrypt(in, 23, 0x0303, rec + 5, &len);
			else
				(*out)->encrypt(out, 23, 0x0303, rec + 13, &len);
		}
		recs += 32;
		t = cpu_now();
	} while (t - t0 < 0.1);
	return (double)recs * (double)n / (t - t0) / 1e6;
}

int main(int argc, char **argv)
{
	int reps = argc > 1 ? atoi(argv[1]) : 15;
	static const size_t sizes[] = {16384, 4096, 1400};
	bool wide = tls_gcm_wide();

	if (!tls_gcm_in_get() || !br_aes_x86ni_ctr_get_vtable() || !br_ghash_pclmul_get()) {
		printf("gcm: no AES-NI/PCLMUL on this CPU, nothing to compare\n");
		return 0;
	}
	printf("%-7s %5s %13s %13s %13s %12s\n", "record", "op", "bearssl MB/s", "128-bit MB/s",
	       "256-bit MB/s", "best/bearssl");
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		for (int open = 0; open < 2; open++) {
			double best[3] = {0, 0, 0};

			for (int r = 0; r < reps; r++) {
				double v[3];

				v[0] = run(&br_sslrec_in_gcm_vtable, &br_sslrec_out_gcm_vtable,
					   open, sizes[s]);
				tls_gcm_allow_wide(false);
				v[1] = run(tls_gcm_in_get(), tls_gcm_out_get(), open, sizes[s]);
				tls_gcm_allow_wide(true);
				v[2] = wide ? run(tls_gcm_in_get(), tls_gcm_out_get(), open,
						  sizes[s])
					    : 0;
				for (int i = 0; i < 3; i++)
					best[i] = v[i] > best[i] ? v[i] : best[i];
			}
			printf("%-7zu %5s %13.0f %13.0f %13.0f %12.2f\n", sizes[s],
			       open ? "open" : "seal", best[0], best[1], best[2],
			       (best[2] > best[1] ? best[2] : best[1]) / best[0]);
		}
	}
	if (!wide)
		printf("(no AVX2+VAES+VPCLMULQDQ here: the 256-bit loop is not used)\n");
	return 0;
}
