/* tls_gcm.c against BearSSL: GHASH and CTR on random inputs, whole AES-GCM through br_gcm, the
 * GCM paper's test vectors, the record classes byte for byte (128-bit and, where the CPU has it,
 * 256-bit VAES loop), and TLS sessions where one side uses ours and the other BearSSL's. Every
 * test is skipped (with a note) on a CPU without AES-NI/PCLMUL. */
#include "pkg/tls/tls_int.h"
#include "pkg/tls/tls_test.h"
#include "test/unit.h"

#include <stdlib.h>

static bool have_ours(void)
{
	if (tls_gcm_in_get() && tls_gcm_out_get() && tls_gcm_ctr_get() && tls_gcm_ghash_get())
		return true;
	fprintf(stderr, "  (no AES-NI/PCLMUL on this CPU: tls_gcm tests skipped)\n");
	return false;
}

/* Lengths 0..300 one by one, then random ones up to 70000, and a few near block edges. */
static size_t test_len(int i)
{
	static const size_t edges[] = {4095, 4096, 4097, 16383, 16384, 16385, 65535, 65536, 70000};

	if (i <= 300)
		return (size_t)i;
	if (i - 301 < (int)(sizeof(edges) / sizeof(edges[0])))
		return edges[i - 301];
	return (size_t)rand_below(70001);
}
#define TEST_LENS 420

static unsigned char *rand_alloc(size_t n)
{
	unsigned char *p = xmalloc(n ? n : 1);

	rand_bytes(p, n);
	return p;
}

static void from_hex(unsigned char *out, const char *hex)
{
	for (size_t i = 0; hex[2 * i]; i++) {
		unsigned v = 0;

		sscanf(hex + 2 * i, "%2x", &v);
		out[i] = (unsigned char)v;
	}
}

/* ---- primitives ------------------------------------------------------------------------------ */

TEST(gcm_ghash_matches_bearssl)
{
	br_ghash ours = tls_gcm_ghash_get(), pcl = br_ghash_pclmul_get();

	if (!have_ours())
		return;
	for (int i = 0; i < TEST_LENS; i++) {
		size_t len = test_len(i);
		unsigned char *data = rand_alloc(len), h[16], y0[16], ya[16], yb[16], yc[16];

		rand_bytes(h, sizeof(h));
		rand_bytes(y0, sizeof(y0));
		memcpy(ya, y0, 16);
		memcpy(yb, y0, 16);
		memcpy(yc, y0, 16);
		ours(ya, h, data, len);
		br_ghash_ctmul64(yb, h, data, len);
		CHECK_MEM(ya, yb, 16);
		if (pcl) {
			pcl(yc, h, data, len);
			CHECK_MEM(ya, yc, 16);
		}
		if (unit_current_failures()) {
			fprintf(stderr, "  ghash mismatch at len %zu\n", len);
			free(data);
			return;
		}
		free(data);
	}
}

TEST(gcm_ctr_matches_bearssl)
{
	const br_block_ctr_class *ours = tls_gcm_ctr_get(), *ni = br_aes_x86ni_ctr_get_vtable();
	static const size_t klens[] = {16, 24, 32};

	if (!have_ours())
		return;
	for (int i = 0; i < TEST_LENS; i++) {
		size_t len = test_len(i), klen = klens[i % 3];
		unsigned char *a = rand_alloc(len), *b = xmalloc(len ? len : 1), *c = NULL;
		unsigned char key[32], iv[12];
		br_aes_gen_ctr_keys ka, kb, kc;
		/* Some counters close to 2^32, to check the wrap of inc32. */
		uint32_t cc = i % 7 == 0 ? 0xFFFFFFF0u + (uint32_t)rand_below(16)
					 : (uint32_t)rand_below(1u << 31);
		uint32_t ra, rb;

		rand_bytes(key, sizeof(key));
		rand_bytes(iv, sizeof(iv));
		memcpy(b, a, len);
		ours->init(&ka.vtable, key, klen);
		br_aes_ct64_ctr_vtable.init(&kb.vtable, key, klen);
		ra = ours->run(&ka.vtable, iv, cc, a, len);
		rb = br_aes_ct64_ctr_vtable.run(&kb.vtable, iv, cc, b, len);
		CHECK_INT(ra, rb);
		CHECK_MEM(a, b, len);
		if (ni) {
			c = xmalloc(len ? len : 1);
			rand_bytes(c, len);
			memcpy(a, c, len);
			ni->init(&kc.vtable, key, klen);
			ours->run(&ka.vtable, iv, cc, a, len);
			CHECK_INT(ni->run(&kc.vtable, iv, cc, c, len), ra);
			CHECK_MEM(a, c, len);
		}
		free(a);
		free(b);
		free(c);
		if (unit_current_failures()) {
			fprintf(stderr, "  ctr mismatch at len %zu, key %zu, counter %u\n", len,
				klen, (unsigned)cc);
			return;
		}
	}
}

/* ---- whole AES-GCM through br_gcm ------------------------------------------------------------ */

/* br_gcm with our CTR + GHASH against br_gcm with the portable ct64 + ctmul64: random keys, IVs
 * (12 bytes mostly, other sizes go through GHASH), AAD and data lengths; then decryption and a
 * tampered tag. */
TEST(gcm_aead_matches_br_gcm)
{
	static const size_t klens[] = {16, 24, 32};

	if (!have_ours())
		return;
	for (int i = 0; i < TEST_LENS; i++) {
		size_t len = test_len(i), klen = klens[i % 3];
		size_t ivlen = i % 5 == 4 ? (size_t)rand_below(40) + 1 : 12;
		size_t alen = (size_t)rand_below(100);
		unsigned char *a = rand_alloc(len), *b = xmalloc(len ? len : 1),
			      *p = xmalloc(len ? len : 1);
		unsigned char key[32], iv[40], aad[100], ta[16], tb[16];
		br_aes_gen_ctr_keys ka, kb;
		br_gcm_context ga, gb;

		rand_bytes(key, sizeof(key));
		rand_bytes(iv, sizeof(iv));
		rand_bytes(aad, sizeof(aad));
		memcpy(b, a, len);
		memcpy(p, a, len);
		tls_gcm_ctr_get()->init(&ka.vtable, key, klen);
		br_aes_ct64_ctr_vtable.init(&kb.vtable, key, klen);
		br_gcm_init(&ga, &ka.vtable, tls_gcm_ghash_get());
		br_gcm_init(&gb, &kb.vtable, br_ghash_ctmul64);
		br_gcm_reset(&ga, iv, ivlen);
		br_gcm_reset(&gb, iv, ivlen);
		br_gcm_aad_inject(&ga, aad, alen);
		br_gcm_aad_inject(&gb, aad, alen);
		br_gcm_flip(&ga);
		br_gcm_flip(&gb);
		/* Ours in two uneven pieces (br_gcm keeps the partial block in between). */
		br_gcm_run(&ga, 1, a, len / 3);
		br_gcm_run(&ga, 1, a + len / 3, len - len / 3);
		br_gcm_run(&gb, 1, b, len);
		br_gcm_get_tag(&ga, ta);
		br_gcm_get_tag(&gb, tb);
		CHECK_MEM(a, b, len);
		CHECK_MEM(ta, tb, 16);

		br_gcm_reset(&ga, iv, ivlen);
		br_gcm_aad_inject(&ga, aad, alen);
		br_gcm_flip(&ga);
		br_gcm_run(&ga, 0, a, len);
		CHECK_MEM(a, p, len);
		CHECK(br_gcm_check_tag(&ga, tb));
		tb[i % 16] ^= (unsigned char)(1u << (i % 8));
		br_gcm_reset(&ga, iv, ivlen);
		br_gcm_aad_inject(&ga, aad, alen);
		br_gcm_flip(&ga);
		br_gcm_run(&ga, 0, b, len);
		CHECK(!br_gcm_check_tag(&ga, tb));
		free(a);
		free(b);
		free(p);
		if (unit_current_failures()) {
			fprintf(stderr, "  gcm mismatch at len %zu, key %zu, iv %zu, aad %zu\n",
				len, klen, ivlen, alen);
			return;
		}
	}
}

/* McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 1-4 and 13-16 (the NIST
 * submission's AES-128 and AES-256 vectors). */
TEST(gcm_nist_vectors)
{
	static const char p60[] = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
				  "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
	static const char p64[] =
		"d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
		"1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
	static const char k128[] = "feffe9928665731c6d6a8f9467308308";
	static const char k256[] =
		"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
	static const char z128[] = "00000000000000000000000000000000";
	static const char z256[] =
		"0000000000000000000000000000000000000000000000000000000000000000";
	static const char iv0[] = "000000000000000000000000", iv1[] = "cafebabefacedbaddecaf888";
	static const char aad[] = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
	static const struct {
		const char *k, *iv, *p, *a, *c, *t;
	} v[] = {
		{z128, iv0, "", "", "", "58e2fccefa7e3061367f1d57a4e7455a"},
		{z128, iv0, z128, "", "0388dace60b6a392f328c2b971b2fe78",
		 "ab6e47d42cec13bdf53a67b21257bddf"},
		{k128, iv1, p64, "",
		 "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
		 "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
		 "4d5c2af327cd64a62cf35abd2ba6fab4"},
		{k128, iv1, p60, aad,
		 "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
		 "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
		 "5bc94fbc3221a5db94fae95ae7121a47"},
		{z256, iv0, "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
		{z256, iv0, z128, "", "cea7403d4d606b6e074ec5d3baf39d18",
		 "d0d1c8a799996bf0265b98b5d48ab919"},
		{k256, iv1, p64, "",
		 "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
		 "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
		 "b094dac5d93471bdec1a502270e3cc6c"},
		{k256, iv1, p60, aad,
		 "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
		 "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
		 "76fc6ece0f4e1768cddf8853bb2d551b"},
	};

	if (!have_ours())
		return;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		unsigned char k[32], iv[12], p[64], a[20], c[64], t[16], tag[16];
		size_t kl = strlen(v[i].k) / 2, pl = strlen(v[i].p) / 2, al = strlen(v[i].a) / 2;
		br_aes_gen_ctr_keys kc;
		br_gcm_context g;

		from_hex(k, v[i].k);
		from_hex(iv, v[i].iv);
		from_hex(p, v[i].p);
		from_hex(a, v[i].a);
		from_hex(c, v[i].c);
		from_hex(t, v[i].t);
		tls_gcm_ctr_get()->init(&kc.vtable, k, kl);
		br_gcm_init(&g, &kc.vtable, tls_gcm_ghash_get());
		br_gcm_reset(&g, iv, 12);
		br_gcm_aad_inject(&g, a, al);
		br_gcm_flip(&g);
		br_gcm_run(&g, 1, p, pl);
		br_gcm_get_tag(&g, tag);
		CHECK_MEM(p, c, pl);
		CHECK_MEM(tag, t, 16);
	}
}

/* ---- record classes -------------------------------------------------------------------------- */

struct rec_side {
	br_ssl_engine_context in, out; /* only the record slots are used */
};

static void rec_setup(struct rec_side *s, bool ours, const unsigned char *key, size_t klen,
		      const unsigned char *iv)
{
	const br_sslrec_in_gcm_class *ic = ours ? tls_gcm_in_get() : &br_sslrec_in_gcm_vtable;
	const br_sslrec_out_gcm_class *oc = ours ? tls_gcm_out_get() : &br_sslrec_out_gcm_vtable;
	const br_block_ctr_class *ctr = br_aes_x86ni_ctr_get_vtable();
	br_ghash gh = br_ghash_pclmul_get();

	if (!ctr || !gh) {
		ctr = &br_aes_ct64_ctr_vtable;
		gh = br_ghash_ctmul64;
	}
	memset(s, 0, sizeof(*s));
	ic->init(&s->in.in.gcm.vtable.in, ctr, key, klen, gh, iv);
	oc->init(&s->out.out.gcm.vtable.out, ctr, key, klen, gh, iv);
}

/* Seals n plaintext bytes from src as a record into buf (with room before and after, as the
 * engine leaves it); returns the record (header included) and its length. */
static unsigned char *rec_seal(struct rec_side *s, unsigned char *buf, size_t cap, int type,
			       const unsigned char *src, size_t n, size_t *rlen)
{
	const br_sslrec_out_class **oc = &s->out.out.vtable;
	size_t start = 5, end = cap; /* the engine starts after the 5-byte header */

	(*oc)->max_plaintext(oc, &start, &end);
	if (n > end - start)
		return NULL;
	memcpy(buf + start, src, n);
	*rlen = n;
	return (*oc)->encrypt(oc, type, 0x0303, buf + start, rlen);
}

static unsigned char *rec_open(struct rec_side *s, unsigned char *rec, size_t rlen, size_t *n)
{
	const br_sslrec_in_class **ic = &s->in.in.vtable;

	if (rlen < 5 || !(*ic)->check_length(ic, rlen - 5))
		return NULL;
	*n = rlen - 5;
	return (*ic)->decrypt(ic, rec[0], 0x0303, rec + 5, n);
}

#define REC_CAP (16384 + 5 + 8 + 16 + 64)

TEST(gcm_records_match_bearssl)
{
	static const size_t edge[] = {0, 1, 15, 16, 17, 127, 128, 129, 255, 16383, 16384};

	if (!have_ours())
		return;
	/* Both main loops (128-bit, and 256-bit VAES when the CPU has it) with both key sizes. */
	for (int round = 0; round < 4; round++) {
		size_t klen = round & 1 ? 32 : 16;
		unsigned char key[32], iv[4];
		struct rec_side *ours = xmalloc(sizeof(*ours)), *theirs = xmalloc(sizeof(*theirs));
		unsigned char *ba = xmalloc(REC_CAP), *bb = xmalloc(REC_CAP), *src = xmalloc(16384);

		rand_bytes(key, sizeof(key));
		rand_bytes(iv, sizeof(iv));
		tls_gcm_allow_wide(round >= 2);
		rec_setup(ours, true, key, klen, iv);
		rec_setup(theirs, false, key, klen, iv);
		tls_gcm_allow_wide(true);
		for (int i = 0; i < 120; i++) {
			size_t n = i < (int)(sizeof(edge) / sizeof(edge[0]))
					   ? edge[i]
					   : (size_t)rand_below(16385);
			int type = 20 + (int)rand_below(4);
			size_t la, lb, pa, pb;
			unsigned char *ra, *rb, *qa, *qb;

			rand_bytes(src, n);
			ra = rec_seal(ours, ba, REC_CAP, type, src, n, &la);
			rb = rec_seal(theirs, bb, REC_CAP, type, src, n, &lb);
			REQUIRE(ra && rb);
			CHECK_INT(la, lb);
			CHECK_INT(la, n + 5 + 8 + 16);
			CHECK_INT(ra - ba, rb - bb);
			CHECK_MEM(ra, rb, la);
			/* Each side opens the other's record. */
			qa = rec_open(ours, rb, lb, &pa);
			qb = rec_open(theirs, ra, la, &pb);
			REQUIRE(qa && qb);
			CHECK_INT(pa, n);
			CHECK_INT(pb, n);
			CHECK_MEM(qa, src, n);
			CHECK_MEM(qb, src, n);
			if (unit_current_failures()) {
				fprintf(stderr,
					"  record mismatch at %zu bytes, key %zu, %s loop\n", n,
					klen, round >= 2 && tls_gcm_wide() ? "256-bit" : "128-bit");
				break;
			}
		}
		free(ours);
		free(theirs);
		free(ba);
		free(bb);
		free(src);
	}
}

TEST(gcm_record_tampering_and_lengths)
{
	unsigned char key[16], iv[4], src[3000], copy[200];
	struct rec_side *a = xmalloc(sizeof(*a)), *b = xmalloc(sizeof(*b));
	unsigned char *buf = xmalloc(REC_CAP), *rec, *q;
	size_t len, n;

	if (!have_ours()) {
		free(a);
		free(b);
		free(buf);
		return;
	}
	rand_bytes(key, sizeof(key));
	rand_bytes(iv, sizeof(iv));
	rand_bytes(src, sizeof(src));
	/* A flipped bit anywhere after the header (nonce, ciphertext or tag) fails the record. */
	for (size_t at = 5; at < sizeof(src) + 5 + 24; at += 97) {
		rec_setup(a, true, key, sizeof(key), iv);
		rec_setup(b, true, key, sizeof(key), iv);
		rec = rec_seal(a, buf, REC_CAP, 23, src, sizeof(src), &len);
		REQUIRE(rec);
		rec[at] ^= 0x10;
		CHECK(rec_open(b, rec, len, &n) == NULL);
	}
	/* So do a wrong record type (in the AAD) and a record out of sequence. Opening works in
	 * place, so the failed attempt gets a copy. */
	rec_setup(a, true, key, sizeof(key), iv);
	rec_setup(b, true, key, sizeof(key), iv);
	rec = rec_seal(a, buf, REC_CAP, 23, src, 100, &len);
	REQUIRE(rec && len <= sizeof(copy));
	memcpy(copy, rec, len);
	copy[0] = 22;
	CHECK(rec_open(b, copy, len, &n) == NULL);
	rec_setup(b, true, key, sizeof(key), iv);
	q = rec_open(b, rec, len, &n);
	CHECK(q && n == 100 && memcmp(q, src, 100) == 0);
	rec = rec_seal(a, buf, REC_CAP, 23, src, 100, &len);
	rec_setup(b, true, key, sizeof(key), iv);
	CHECK(rec_open(b, rec, len, &n) == NULL);

	/* Length rules as BearSSL's: 24..16384+24 bytes in; at most 16384 plaintext bytes out. */
	{
		const br_sslrec_in_class **ic = &b->in.in.vtable;
		const br_sslrec_out_class **oc = &a->out.out.vtable;
		br_ssl_engine_context *ref = xmalloc(sizeof(*ref));
		const br_sslrec_in_class **ric = &ref->in.vtable;
		const br_sslrec_out_class **roc = &ref->out.vtable;

		br_sslrec_in_gcm_vtable.init(&ref->in.gcm.vtable.in, &br_aes_ct64_ctr_vtable, key,
					     16, br_ghash_ctmul64, iv);
		br_sslrec_out_gcm_vtable.init(&ref->out.gcm.vtable.out, &br_aes_ct64_ctr_vtable,
					      key, 16, br_ghash_ctmul64, iv);
		for (size_t r = 0; r < 16500; r += 23)
			CHECK_INT((*ic)->check_length(ic, r), (*ric)->check_length(ric, r));
		for (size_t end = 40; end < 17000; end += 331) {
			size_t s1 = 5, e1 = end, s2 = 5, e2 = end;

			(*oc)->max_plaintext(oc, &s1, &e1);
			(*roc)->max_plaintext(roc, &s2, &e2);
			CHECK_INT(s1, s2);
			CHECK_INT(e1, e2);
		}
		free(ref);
	}
	free(a);
	free(b);
	free(buf);
}

/* ---- TLS sessions: ours on one side, BearSSL's on the other ---------------------------------- */

static bool xfer(struct tls_conn *from, struct tls_conn *to)
{
	bool progress = false;
	const uint8_t *p;
	size_t len;

	while ((p = tls_conn_pull_cipher(from, &len))) {
		size_t k = tls_conn_push_cipher(to, p, len);

		if (k == 0)
			break;
		tls_conn_cipher_done(from, k);
		progress = true;
	}
	return progress;
}

static void pump(struct tls_conn *a, struct tls_conn *b)
{
	for (int i = 0; i < 100000; i++) {
		bool pa = xfer(a, b), pb = xfer(b, a);

		if (!pa && !pb)
			return;
	}
	unit_fail(__FILE__, __LINE__, "pump: no quiescence");
}

/* BearSSL's own AES-GCM (record classes, CTR and GHASH) in a config made by algos_pick(). */
static void use_bearssl_gcm(struct tls_config *cfg)
{
	cfg->gcm_in = &br_sslrec_in_gcm_vtable;
	cfg->gcm_out = &br_sslrec_out_gcm_vtable;
	cfg->aes_ctr = br_aes_x86ni_ctr_get_vtable();
	cfg->ghash = br_ghash_pclmul_get();
}

/* Streams n random bytes each way at once, in odd-sized writes, and checks them. */
static void stream_both_ways(struct tls_conn *cli, struct tls_conn *srv, size_t n)
{
	unsigned char *src[2] = {rand_alloc(n), rand_alloc(n)};
	unsigned char *dst[2] = {xmalloc(n), xmalloc(n)};
	struct tls_conn *c[2] = {cli, srv};
	size_t sent[2] = {0, 0}, got[2] = {0, 0};

	for (int rounds = 0; (got[0] < n || got[1] < n) && rounds < 100000; rounds++) {
		for (int d = 0; d < 2; d++) {
			const uint8_t *p;
			size_t len;

			if (sent[d] < n) {
				size_t r = (size_t)rand_below(40000) + 1;
				size_t want = MIN(n - sent[d], r);

				sent[d] += tls_conn_push_plain(c[d], src[d] + sent[d], want);
				tls_conn_flush(c[d]);
			}
			/* c[d] receives what the other side sent. */
			while ((p = tls_conn_pull_plain(c[d], &len)) && got[1 - d] < n) {
				len = MIN(len, n - got[1 - d]);
				memcpy(dst[1 - d] + got[1 - d], p, len);
				got[1 - d] += len;
				tls_conn_plain_done(c[d], len);
			}
		}
		pump(cli, srv);
	}
	CHECK_INT(got[0], n);
	CHECK_INT(got[1], n);
	CHECK(memcmp(src[0], dst[0], n) == 0);
	CHECK(memcmp(src[1], dst[1], n) == 0);
	CHECK_INT(tls_conn_error(cli), 0);
	CHECK_INT(tls_conn_error(srv), 0);
	for (int d = 0; d < 2; d++) {
		free(src[d]);
		free(dst[d]);
	}
}

static bool engine_uses_ours(const struct tls_conn *c)
{
	return c->u.eng.in.vtable == &tls_gcm_in_get()->inner &&
	       c->u.eng.out.vtable == &tls_gcm_out_get()->inner;
}

static void session(bool client_ours, uint16_t suite)
{
	struct tt_cred scred, ccred;
	struct tls_server_opts so;
	struct tls_client_opts co;
	struct errbuf eb = {0};
	struct tls_config *scfg, *ccfg;
	struct tls_conn *cli = xcalloc(1, sizeof(*cli)), *srv = xcalloc(1, sizeof(*srv));

	REQUIRE(tt_fixtures() && tt_cred_load(&scred, "server", NULL) &&
		tt_cred_load(&ccred, "client", NULL));
	tt_server_opts(&so, &scred);
	tt_client_opts(&co, &ccred);
	scfg = tls_config_new_server(&so, &eb);
	ccfg = tls_config_new_client(&co, &eb);
	REQUIRE(scfg && ccfg);
	CHECK(scfg->gcm_in == tls_gcm_in_get() && ccfg->gcm_out == tls_gcm_out_get());
	use_bearssl_gcm(client_ours ? scfg : ccfg);
	scfg->suites[0] = suite; /* the server's choice wins */
	scfg->nsuites = 1;
	REQUIRE(tls_conn_init_server(srv, scfg) == 0);
	REQUIRE(tls_conn_init_client(cli, ccfg, NULL) == 0);
	pump(cli, srv);
	REQUIRE((tls_conn_state(cli) & TLS_ST_DONE) && (tls_conn_state(srv) & TLS_ST_DONE));
	CHECK_INT(tls_conn_cipher_suite(cli), suite);
	CHECK(engine_uses_ours(client_ours ? cli : srv));
	CHECK(!engine_uses_ours(client_ours ? srv : cli));
	stream_both_ways(cli, srv, 3 << 20);
	stream_both_ways(cli, srv, 12345);
	tls_conn_fini(cli);
	tls_conn_fini(srv);
	free(cli);
	free(srv);
	tls_config_unref(scfg);
	tls_config_unref(ccfg);
	tt_cred_fini(&scred);
	tt_cred_fini(&ccred);
}

/* The record contexts are set up during the handshake (in pump()), so allow_wide() chooses the
 * loop for the whole session. */
static void sessions(bool client_ours)
{
	for (int wide = 0; wide < 2; wide++) {
		tls_gcm_allow_wide(wide);
		CHECK(wide || !tls_gcm_wide());
		session(client_ours, BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
		session(client_ours, BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384);
	}
	tls_gcm_allow_wide(true);
}

TEST(gcm_session_ours_client_bearssl_server)
{
	if (have_ours())
		sessions(true);
}

TEST(gcm_session_bearssl_client_ours_server)
{
	if (have_ours())
		sessions(false);
}
