/* AES-GCM for the TLS 1.2 record layer on AES-NI + PCLMULQDQ, plugged into BearSSL through its
 * public hooks:
 *   - tls_gcm_in_get()/tls_gcm_out_get(): GCM record classes (br_ssl_engine_set_gcm) that seal
 *     and open a record in one pass, 8 blocks (128 bytes) at a time: CTR (8 interleaved AES
 *     streams) and GHASH of the same 8 ciphertext blocks in one loop body, so the AES and the
 *     carry-less multiplier units work side by side on the same cache lines. The main loop has
 *     a 128-bit version and, when the CPU has AVX2 + VAES + VPCLMULQDQ, a 256-bit one (two
 *     blocks per instruction); the choice is made per record context, at key setup;
 *   - tls_gcm_ctr_get(): an AES-CTR class (br_ssl_engine_set_aes_ctr), 8 blocks at a time;
 *   - tls_gcm_ghash_get(): a GHASH (br_ssl_engine_set_ghash) that aggregates 8 blocks.
 *   (These two are not installed: the record classes are faster. The tests use them to run the
 *   shared AES and GHASH code through br_gcm against BearSSL and the NIST vectors.)
 * Each getter returns NULL when the CPU lacks AES-NI, PCLMULQDQ or SSE4.1 (CPUID, at run time);
 * the rest of the binary is built for baseline x86-64, only the functions here carry a target
 * attribute.
 *
 * GHASH arithmetic: a block is byte-reversed on load, which turns GCM's bit-reflected field
 * element into the "natural" order of POLYVAL (RFC 8452): bit i of the 128-bit register is the
 * coefficient of x^i. With H' = mulX(ByteReverse(H)) (RFC 8452, appendix A),
 *   GHASH_H(X1..Xn) = ByteReverse(POLYVAL_H'(ByteReverse(X1) .. ByteReverse(Xn))),
 * and POLYVAL's product dot(a, b) = a * b * x^-128 mod x^128 + x^127 + x^126 + x^121 + 1 needs
 * no bit shift: the 256-bit carry-less product is folded from the bottom, 64 bits at a time,
 * with one PCLMULQDQ by 0xC2 << 56 each (Montgomery-style, since P = 1 mod x^64). n blocks are
 * hashed as  sum_j (X_j [^ Y]) * H'^(n-j)  with products from Karatsuba (3 multiplications per
 * block), summed unreduced and reduced once per 8 blocks. H'^k = dot(H'^(k-1), H') keeps the
 * x^-128 factors straight because dot is the field product with a fixed factor.
 *
 * Key schedule: the FIPS-197 expansion, with SubWord done by AESENCLAST on the word broadcast
 * to all four columns (ShiftRows is then the identity), which serves 128-, 192- and 256-bit keys
 * alike. */
#include "pkg/tls/tls_int.h"

#include <cpuid.h>
#include <immintrin.h>
#include <string.h>

#define GCM_TARGET __attribute__((target("aes,pclmul,sse4.1")))
#define GCM_INLINE static inline __attribute__((always_inline)) GCM_TARGET

/* Largest AES key schedule: 15 round keys (AES-256). */
#define RK_MAX 15

/* ---- CPU detection --------------------------------------------------------------------------- */

static bool cpu_ok(void)
{
	static atomic_int cached = -1; /* every thread computes the same value */
	unsigned a = 0, b = 0, c = 0, d = 0;
	int ok = atomic_load_explicit(&cached, memory_order_relaxed);

	if (ok >= 0)
		return ok;
	ok = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_AES) && (c & bit_PCLMUL) &&
	     (c & bit_SSE4_1) && (c & bit_SSSE3);
	atomic_store_explicit(&cached, ok, memory_order_relaxed);
	return ok;
}

static atomic_bool wide_allowed = true;

/* AVX2 + VAES + VPCLMULQDQ, with the OS saving the YMM state (XCR0 bits 1 and 2). */
static bool wide_ok(void)
{
	static atomic_int cached = -1;
	unsigned a = 0, b = 0, c = 0, d = 0;
	int ok = atomic_load_explicit(&cached, memory_order_relaxed);

	if (ok < 0) {
		ok = cpu_ok() && __get_cpuid(1, &a, &b, &c, &d) && (c & bit_OSXSAVE) &&
		     (c & bit_AVX);
		if (ok) {
			unsigned lo, hi;

			__asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
			(void)hi;
			ok = (lo & 6) == 6 && __get_cpuid_count(7, 0, &a, &b, &c, &d) &&
			     (b & bit_AVX2) && (c & bit_VAES) && (c & bit_VPCLMULQDQ);
		}
		atomic_store_explicit(&cached, ok, memory_order_relaxed);
	}
	return ok && atomic_load_explicit(&wide_allowed, memory_order_relaxed);
}

void tls_gcm_allow_wide(bool on)
{
	atomic_store_explicit(&wide_allowed, on, memory_order_relaxed);
}

bool tls_gcm_wide(void)
{
	return wide_ok();
}

/* ---- small helpers --------------------------------------------------------------------------- */

static void put_be16(unsigned char *p, unsigned v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
}

static void put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static void put_be64(unsigned char *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

/* Clears key material off the stack once per record: memset, kept by the barrier (a dead store
 * otherwise). secure_wipe() goes byte by byte, which showed at ~7 % of a ztunnel's profile. */
static void wipe(void *p, size_t n)
{
	memset(p, 0, n);
	__asm__ __volatile__("" : : "r"(p) : "memory");
}

static uint64_t get_be64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

GCM_INLINE __m128i load(const void *p)
{
	return _mm_loadu_si128((const __m128i *)p);
}

GCM_INLINE void store(void *p, __m128i v)
{
	_mm_storeu_si128((__m128i *)p, v);
}

/* Reverses the 16 bytes. */
GCM_INLINE __m128i bswap(__m128i x)
{
	return _mm_shuffle_epi8(x,
				_mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}

/* ---- AES ------------------------------------------------------------------------------------- */

GCM_TARGET static uint32_t sub_word(uint32_t w)
{
	__m128i x = _mm_set1_epi32((int)w);

	return (uint32_t)_mm_cvtsi128_si32(_mm_aesenclast_si128(x, _mm_setzero_si128()));
}

/* Encryption round keys (FIPS-197 §5.2) as 16-byte blocks into rk; returns the number of rounds
 * (10, 12, 14), or 0 for a key length other than 16, 24 or 32 (then rk is all zero). */
GCM_TARGET static unsigned key_expand(unsigned char *rk, const void *key, size_t len)
{
	const unsigned char *kb = key;
	uint32_t w[4 * RK_MAX];
	unsigned nk = (unsigned)(len / 4), nr, n;
	uint32_t rcon = 1;

	if (len != 16 && len != 24 && len != 32) {
		memset(rk, 0, RK_MAX * 16);
		return 0;
	}
	nr = nk + 6;
	n = 4 * (nr + 1);
	for (unsigned i = 0; i < nk; i++)
		w[i] = (uint32_t)kb[4 * i] | (uint32_t)kb[4 * i + 1] << 8 |
		       (uint32_t)kb[4 * i + 2] << 16 | (uint32_t)kb[4 * i + 3] << 24;
	for (unsigned i = nk; i < n; i++) {
		uint32_t t = w[i - 1];

		if (i % nk == 0) {
			/* RotWord on a little-endian word is a right rotation by 8. */
			t = sub_word((t >> 8) | (t << 24)) ^ rcon;
			rcon = ((rcon << 1) ^ ((rcon >> 7) * 0x11b)) & 0xff;
		} else if (nk > 6 && i % nk == 4) {
			t = sub_word(t);
		}
		w[i] = w[i - nk] ^ t;
	}
	for (unsigned i = 0; i < n; i++) {
		rk[4 * i] = (unsigned char)w[i];
		rk[4 * i + 1] = (unsigned char)(w[i] >> 8);
		rk[4 * i + 2] = (unsigned char)(w[i] >> 16);
		rk[4 * i + 3] = (unsigned char)(w[i] >> 24);
	}
	memset(rk + 4 * n, 0, 16 * RK_MAX - 4 * n);
	secure_wipe(w, sizeof(w));
	return nr;
}

GCM_INLINE void keys_load(__m128i *k, const unsigned char *rk, unsigned nr)
{
	for (unsigned i = 0; i <= nr; i++)
		k[i] = load(rk + 16 * i);
}

GCM_INLINE __m128i aes1(__m128i x, const __m128i *k, unsigned nr)
{
	x = _mm_xor_si128(x, k[0]);
	for (unsigned r = 1; r < nr; r++)
		x = _mm_aesenc_si128(x, k[r]);
	return _mm_aesenclast_si128(x, k[nr]);
}

/* Eight independent blocks, round by round, so the AES unit's pipeline stays full. */
GCM_INLINE void aes8(__m128i *x, const __m128i *k, unsigned nr)
{
#pragma GCC unroll 8
	for (int i = 0; i < 8; i++)
		x[i] = _mm_xor_si128(x[i], k[0]);
	for (unsigned r = 1; r < nr; r++) {
		__m128i kr = k[r];

#pragma GCC unroll 8
		for (int i = 0; i < 8; i++)
			x[i] = _mm_aesenc_si128(x[i], kr);
	}
#pragma GCC unroll 8
	for (int i = 0; i < 8; i++)
		x[i] = _mm_aesenclast_si128(x[i], k[nr]);
}

/* Counter blocks are kept byte-reversed: the big-endian 32-bit counter of GCM's inc32 is then
 * lane 0 of the register and a 32-bit add increments it modulo 2^32, as inc32 does. */
GCM_INLINE void ctr8(__m128i *x, __m128i ctr)
{
#pragma GCC unroll 8
	for (int i = 0; i < 8; i++)
		x[i] = bswap(_mm_add_epi32(ctr, _mm_set_epi32(0, 0, 0, i)));
}

/* ---- GHASH (POLYVAL arithmetic on byte-reversed blocks) -------------------------------------- */

/* H'^1..H'^8 and, in the low half of hk[i], the xor of the halves of h[i] (Karatsuba). */
struct gh_key {
	__m128i h[8];
	__m128i hk[8];
};

/* (hi:lo) * x^-128 mod P. */
GCM_INLINE __m128i gf_reduce(__m128i hi, __m128i lo)
{
	const __m128i c = _mm_set_epi64x(0, (long long)0xC200000000000000ULL);
	__m128i w;

	w = _mm_xor_si128(_mm_shuffle_epi32(lo, 0x4E), _mm_clmulepi64_si128(lo, c, 0x00));
	w = _mm_xor_si128(_mm_shuffle_epi32(w, 0x4E), _mm_clmulepi64_si128(w, c, 0x00));
	return _mm_xor_si128(hi, w);
}

struct gf_acc {
	__m128i lo, hi, mid;
};

GCM_INLINE void gf_acc_add(struct gf_acc *s, __m128i a, __m128i h, __m128i hk)
{
	__m128i ak = _mm_xor_si128(a, _mm_shuffle_epi32(a, 0x4E));

	s->lo = _mm_xor_si128(s->lo, _mm_clmulepi64_si128(a, h, 0x00));
	s->hi = _mm_xor_si128(s->hi, _mm_clmulepi64_si128(a, h, 0x11));
	s->mid = _mm_xor_si128(s->mid, _mm_clmulepi64_si128(ak, hk, 0x00));
}

GCM_INLINE __m128i gf_acc_fold(struct gf_acc s)
{
	__m128i mid = _mm_xor_si128(s.mid, _mm_xor_si128(s.lo, s.hi));

	return gf_reduce(_mm_xor_si128(s.hi, _mm_srli_si128(mid, 8)),
			 _mm_xor_si128(s.lo, _mm_slli_si128(mid, 8)));
}

GCM_INLINE __m128i hk_of(__m128i h)
{
	return _mm_xor_si128(h, _mm_shuffle_epi32(h, 0x4E));
}

GCM_INLINE __m128i gf_mul(__m128i a, __m128i h)
{
	struct gf_acc s = {_mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128()};

	gf_acc_add(&s, a, h, hk_of(h));
	return gf_acc_fold(s);
}

/* H' from GCM's H (16 bytes as AES_K(0) gives them): byte-reversed, times x. */
GCM_INLINE __m128i h_prime(const unsigned char *hb)
{
	uint64_t hi = get_be64(hb), lo = get_be64(hb + 8);
	uint64_t top = hi >> 63;

	hi = (hi << 1) | (lo >> 63);
	lo <<= 1;
	hi ^= (0 - top) & 0xC200000000000000ULL;
	lo ^= top;
	return _mm_set_epi64x((long long)hi, (long long)lo);
}

GCM_INLINE void gh_key_init(struct gh_key *g, __m128i h1, int n)
{
	g->h[0] = h1;
	g->hk[0] = hk_of(h1);
	for (int i = 1; i < n; i++) {
		g->h[i] = gf_mul(g->h[i - 1], h1);
		g->hk[i] = hk_of(g->h[i]);
	}
}

/* y' = (y ^ a[0]) * H'^n ^ a[1] * H'^(n-1) ^ ... ^ a[n-1] * H', blocks already byte-reversed,
 * 1 <= n <= 8. */
GCM_INLINE __m128i gh_n(__m128i y, const __m128i *a, int n, const struct gh_key *g)
{
	struct gf_acc s = {_mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128()};

	gf_acc_add(&s, _mm_xor_si128(a[0], y), g->h[n - 1], g->hk[n - 1]);
#pragma GCC unroll 8
	for (int j = 1; j < n; j++)
		gf_acc_add(&s, a[j], g->h[n - 1 - j], g->hk[n - 1 - j]);
	return gf_acc_fold(s);
}

/* ---- br_ghash -------------------------------------------------------------------------------- */

GCM_TARGET static void gcm_ghash(void *y, const void *h, const void *data, size_t len)
{
	const unsigned char *p = data;
	__m128i s = bswap(load(y));
	struct gh_key g;

	if (len >= 128) {
		gh_key_init(&g, h_prime(h), 8);
		while (len >= 128) {
			__m128i a[8];

#pragma GCC unroll 8
			for (int i = 0; i < 8; i++)
				a[i] = bswap(load(p + 16 * i));
			s = gh_n(s, a, 8, &g);
			p += 128;
			len -= 128;
		}
	} else {
		gh_key_init(&g, h_prime(h), 1);
	}
	while (len > 0) {
		unsigned char tmp[16];
		size_t n = len < 16 ? len : 16;

		memcpy(tmp, p, n);
		memset(tmp + n, 0, 16 - n);
		s = gf_mul(_mm_xor_si128(s, bswap(load(tmp))), g.h[0]);
		p += n;
		len -= n;
	}
	store(y, bswap(s));
}

/* ---- br_block_ctr_class ---------------------------------------------------------------------- */

struct ctr_keys {
	const br_block_ctr_class *vtable;
	unsigned char rk[16 * RK_MAX];
	unsigned nr;
};
_Static_assert(sizeof(struct ctr_keys) <= sizeof(br_aes_gen_ctr_keys),
	       "CTR context must fit BearSSL's AES CTR context");

static const br_block_ctr_class ctr_vtable;

static void ctr_init(const br_block_ctr_class **ctx, const void *key, size_t len)
{
	struct ctr_keys *kc = (struct ctr_keys *)(void *)ctx;

	kc->vtable = &ctr_vtable;
	kc->nr = key_expand(kc->rk, key, len);
}

GCM_TARGET static uint32_t ctr_run(const br_block_ctr_class *const *ctx, const void *iv,
				   uint32_t cc, void *data, size_t len)
{
	const struct ctr_keys *kc = (const struct ctr_keys *)(const void *)ctx;
	unsigned char *p = data, blk[16];
	uint32_t blocks = (uint32_t)(len >> 4);
	unsigned nr = kc->nr;
	__m128i k[RK_MAX], ctr, x[8];

	if (nr == 0)
		return cc + blocks;
	keys_load(k, kc->rk, nr);
	memcpy(blk, iv, 12);
	put_be32(blk + 12, cc);
	ctr = bswap(load(blk));
	while (len >= 128) {
		ctr8(x, ctr);
		aes8(x, k, nr);
#pragma GCC unroll 8
		for (int i = 0; i < 8; i++)
			store(p + 16 * i, _mm_xor_si128(x[i], load(p + 16 * i)));
		ctr = _mm_add_epi32(ctr, _mm_set_epi32(0, 0, 0, 8));
		p += 128;
		len -= 128;
	}
	if (len > 0) {
		unsigned char ks[128];

		ctr8(x, ctr);
		aes8(x, k, nr);
		for (int i = 0; i < 8; i++)
			store(ks + 16 * i, x[i]);
		for (size_t i = 0; i < len; i++)
			p[i] ^= ks[i];
		wipe(ks, sizeof(ks));
	}
	return cc + blocks;
}

static const br_block_ctr_class ctr_vtable = {
	sizeof(struct ctr_keys), 16, 4, ctr_init, ctr_run,
};

/* ---- record classes -------------------------------------------------------------------------- */

struct gcm_rec {
	union {
		const void *gen;
		const br_sslrec_in_gcm_class *in;
		const br_sslrec_out_gcm_class *out;
	} vtable;
	uint64_t seq;
	unsigned nr;
	bool wide; /* gcm_pass_wide() (VAES + VPCLMULQDQ) */
	unsigned char iv[4];
	unsigned char rk[16 * RK_MAX];
	unsigned char h[16 * 8];  /* H'^1..H'^8 */
	unsigned char hk[16 * 8]; /* their Karatsuba halves */
};
_Static_assert(sizeof(struct gcm_rec) <= sizeof(((br_ssl_engine_context *)0)->in),
	       "GCM record context must fit the engine's input slot");
_Static_assert(sizeof(struct gcm_rec) <= sizeof(((br_ssl_engine_context *)0)->out),
	       "GCM record context must fit the engine's output slot");

GCM_TARGET static void rec_init(struct gcm_rec *cc, const void *key, size_t key_len, const void *iv)
{
	__m128i k[RK_MAX];
	unsigned char hb[16];
	struct gh_key g;

	cc->seq = 0;
	cc->wide = wide_ok();
	memcpy(cc->iv, iv, sizeof(cc->iv));
	cc->nr = key_expand(cc->rk, key, key_len);
	if (cc->nr == 0) {
		/* Not an AES key size BearSSL would hand us; keep the context deterministic. */
		memset(cc->h, 0, sizeof(cc->h));
		memset(cc->hk, 0, sizeof(cc->hk));
		return;
	}
	keys_load(k, cc->rk, cc->nr);
	store(hb, aes1(_mm_setzero_si128(), k, cc->nr));
	gh_key_init(&g, h_prime(hb), 8);
	for (int i = 0; i < 8; i++) {
		store(cc->h + 16 * i, g.h[i]);
		store(cc->hk + 16 * i, g.hk[i]);
	}
	secure_wipe(hb, sizeof(hb));
	secure_wipe(&g, sizeof(g));
	secure_wipe(k, sizeof(k));
}

/* One pass over a record: CTR from counter 2 under iv || nonce, GHASH over the 13-byte AAD, the
 * ciphertext and the lengths; tag = GHASH ^ E(J0). enc: buf holds plaintext, becomes
 * ciphertext (hashed after encryption); else the reverse (hashed before decryption). The 128-
 * and 256-bit variants share the start (keys, J0, AAD) and the end (the last 0..127 bytes, the
 * lengths block, the tag) and differ in the main loop over 128-byte chunks. */
struct pass {
	__m128i k[RK_MAX];
	struct gh_key g;
	__m128i j0, ctr, y;
	unsigned nr;
};

GCM_INLINE void pass_begin(struct pass *p, const struct gcm_rec *cc, const unsigned char *nonce,
			   const unsigned char *aad)
{
	unsigned char blk[16];

	p->nr = cc->nr;
	keys_load(p->k, cc->rk, p->nr);
	for (int i = 0; i < 8; i++) {
		p->g.h[i] = load(cc->h + 16 * i);
		p->g.hk[i] = load(cc->hk + 16 * i);
	}
	memcpy(blk, cc->iv, 4);
	memcpy(blk + 4, nonce, 8);
	put_be32(blk + 12, 1);
	p->j0 = bswap(load(blk));
	p->ctr = _mm_add_epi32(p->j0, _mm_set_epi32(0, 0, 0, 1));
	memcpy(blk, aad, 13);
	memset(blk + 13, 0, 3);
	p->y = gf_mul(bswap(load(blk)), p->g.h[0]);
}

/* len < 128 bytes left at buf; total is the record's ciphertext length. */
GCM_INLINE void pass_end(struct pass *p, unsigned char *buf, size_t len, bool enc, size_t total,
			 unsigned char *tag)
{
	if (len > 0) {
		/* Up to 8 blocks, the last possibly partial (zero-padded for GHASH). */
		unsigned char t[128], ks[128];
		int nb = (int)((len + 15) / 16);
		__m128i x[8], a[8];

		ctr8(x, p->ctr);
		aes8(x, p->k, p->nr);
		for (int i = 0; i < 8; i++)
			store(ks + 16 * i, x[i]);
		memset(t, 0, sizeof(t));
		memcpy(t, buf, len);
		if (!enc)
			for (int i = 0; i < nb; i++)
				a[i] = bswap(load(t + 16 * i));
		for (size_t i = 0; i < len; i++)
			t[i] ^= ks[i];
		memcpy(buf, t, len);
		if (enc)
			for (int i = 0; i < nb; i++)
				a[i] = bswap(load(t + 16 * i));
		p->y = gh_n(p->y, a, nb, &p->g);
		wipe(ks, sizeof(ks));
		wipe(t, sizeof(t));
	}
	/* Lengths block: bit lengths of AAD (13 bytes) and ciphertext, byte-reversed. */
	p->y = gf_mul(_mm_xor_si128(p->y, _mm_set_epi64x(13 * 8, (long long)total * 8)), p->g.h[0]);
	store(tag, _mm_xor_si128(bswap(p->y), aes1(bswap(p->j0), p->k, p->nr)));
	wipe(p, sizeof(*p));
}

GCM_TARGET static void gcm_pass(const struct gcm_rec *cc, const unsigned char *nonce,
				const unsigned char *aad, unsigned char *buf, size_t len, bool enc,
				unsigned char *tag)
{
	const size_t total = len;
	struct pass p;

	pass_begin(&p, cc, nonce, aad);
	if (enc && len >= 128) {
		/* Software pipeline: the GHASH of chunk i-1 has no dependency on the AES of chunk
		 * i, so both units stay busy. */
		__m128i x[8], a[8];

		ctr8(x, p.ctr);
		p.ctr = _mm_add_epi32(p.ctr, _mm_set_epi32(0, 0, 0, 8));
		aes8(x, p.k, p.nr);
#pragma GCC unroll 8
		for (int i = 0; i < 8; i++) {
			__m128i c = _mm_xor_si128(x[i], load(buf + 16 * i));

			store(buf + 16 * i, c);
			a[i] = bswap(c);
		}
		buf += 128;
		len -= 128;
		while (len >= 128) {
			ctr8(x, p.ctr);
			p.ctr = _mm_add_epi32(p.ctr, _mm_set_epi32(0, 0, 0, 8));
			aes8(x, p.k, p.nr);
			p.y = gh_n(p.y, a, 8, &p.g);
#pragma GCC unroll 8
			for (int i = 0; i < 8; i++) {
				__m128i c = _mm_xor_si128(x[i], load(buf + 16 * i));

				store(buf + 16 * i, c);
				a[i] = bswap(c);
			}
			buf += 128;
			len -= 128;
		}
		p.y = gh_n(p.y, a, 8, &p.g);
	}
	while (len >= 128) {
		/* Decryption: the chunk's GHASH and its AES are independent already. */
		__m128i x[8], a[8];

		ctr8(x, p.ctr);
		p.ctr = _mm_add_epi32(p.ctr, _mm_set_epi32(0, 0, 0, 8));
#pragma GCC unroll 8
		for (int i = 0; i < 8; i++)
			a[i] = bswap(load(buf + 16 * i));
		aes8(x, p.k, p.nr);
		p.y = gh_n(p.y, a, 8, &p.g);
#pragma GCC unroll 8
		for (int i = 0; i < 8; i++)
			store(buf + 16 * i, _mm_xor_si128(x[i], load(buf + 16 * i)));
		buf += 128;
		len -= 128;
	}
	pass_end(&p, buf, len, enc, total, tag);
}

/* ---- the same with 256-bit VAES / VPCLMULQDQ (two blocks per instruction) -------------------- */

#define GCM_WIDE_TARGET __attribute__((target("aes,pclmul,sse4.1,avx,avx2,vaes,vpclmulqdq")))
#define GCM_WIDE_INLINE static inline __attribute__((always_inline)) GCM_WIDE_TARGET

GCM_WIDE_INLINE __m256i load2(const void *p)
{
	return _mm256_loadu_si256((const __m256i *)p);
}

GCM_WIDE_INLINE void store2(void *p, __m256i v)
{
	_mm256_storeu_si256((__m256i *)p, v);
}

/* Reverses the bytes of each 16-byte lane. */
GCM_WIDE_INLINE __m256i bswap2(__m256i x)
{
	const __m128i m = _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

	return _mm256_shuffle_epi8(x, _mm256_broadcastsi128_si256(m));
}

/* Eight blocks as four pairs: counters ctr+2j (low lane) and ctr+2j+1 (high lane). */
GCM_WIDE_INLINE void aes8_wide(__m256i *x, __m256i cy, const __m256i *ky, unsigned nr)
{
#pragma GCC unroll 4
	for (int j = 0; j < 4; j++)
		x[j] = _mm256_xor_si256(
			bswap2(_mm256_add_epi32(cy,
						_mm256_set_epi32(0, 0, 0, 2 * j, 0, 0, 0, 2 * j))),
			ky[0]);
	for (unsigned r = 1; r < nr; r++) {
		__m256i kr = ky[r];

#pragma GCC unroll 4
		for (int j = 0; j < 4; j++)
			x[j] = _mm256_aesenc_epi128(x[j], kr);
	}
#pragma GCC unroll 4
	for (int j = 0; j < 4; j++)
		x[j] = _mm256_aesenclast_epi128(x[j], ky[nr]);
}

/* gh_n(y, 8 blocks) with the blocks in pairs: hy[j] holds H'^(8-2j) (low) and H'^(7-2j)
 * (high), hky[j] their Karatsuba halves. */
GCM_WIDE_INLINE __m128i gh8_wide(__m128i y, const __m256i *a, const __m256i *hy, const __m256i *hky)
{
	__m256i lo = _mm256_setzero_si256(), hi = lo, mid = lo;
	struct gf_acc s;

#pragma GCC unroll 4
	for (int j = 0; j < 4; j++) {
		__m256i v = j == 0 ? _mm256_xor_si256(a[0], _mm256_zextsi128_si256(y)) : a[j];
		__m256i vk = _mm256_xor_si256(v, _mm256_shuffle_epi32(v, 0x4E));

		lo = _mm256_xor_si256(lo, _mm256_clmulepi64_epi128(v, hy[j], 0x00));
		hi = _mm256_xor_si256(hi, _mm256_clmulepi64_epi128(v, hy[j], 0x11));
		mid = _mm256_xor_si256(mid, _mm256_clmulepi64_epi128(vk, hky[j], 0x00));
	}
	s.lo = _mm_xor_si128(_mm256_castsi256_si128(lo), _mm256_extracti128_si256(lo, 1));
	s.hi = _mm_xor_si128(_mm256_castsi256_si128(hi), _mm256_extracti128_si256(hi, 1));
	s.mid = _mm_xor_si128(_mm256_castsi256_si128(mid), _mm256_extracti128_si256(mid, 1));
	return gf_acc_fold(s);
}

GCM_WIDE_TARGET static void gcm_pass_wide(const struct gcm_rec *cc, const unsigned char *nonce,
					  const unsigned char *aad, unsigned char *buf, size_t len,
					  bool enc, unsigned char *tag)
{
	const size_t total = len;
	const __m256i eight = _mm256_set_epi32(0, 0, 0, 8, 0, 0, 0, 8);
	__m256i ky[RK_MAX], hy[4], hky[4], cy;
	struct pass p;

	pass_begin(&p, cc, nonce, aad);
	if (len >= 128) {
		for (unsigned r = 0; r <= p.nr; r++)
			ky[r] = _mm256_broadcastsi128_si256(p.k[r]);
		for (int j = 0; j < 4; j++) {
			hy[j] = _mm256_set_m128i(p.g.h[6 - 2 * j], p.g.h[7 - 2 * j]);
			hky[j] = _mm256_set_m128i(p.g.hk[6 - 2 * j], p.g.hk[7 - 2 * j]);
		}
		cy = _mm256_add_epi32(_mm256_broadcastsi128_si256(p.ctr),
				      _mm256_set_epi32(0, 0, 0, 1, 0, 0, 0, 0));
		if (enc) {
			/* Pipelined as in gcm_pass(). */
			__m256i x[4], a[4];

			aes8_wide(x, cy, ky, p.nr);
			cy = _mm256_add_epi32(cy, eight);
#pragma GCC unroll 4
			for (int j = 0; j < 4; j++) {
				__m256i c = _mm256_xor_si256(x[j], load2(buf + 32 * j));

				store2(buf + 32 * j, c);
				a[j] = bswap2(c);
			}
			buf += 128;
			len -= 128;
			while (len >= 128) {
				aes8_wide(x, cy, ky, p.nr);
				cy = _mm256_add_epi32(cy, eight);
				p.y = gh8_wide(p.y, a, hy, hky);
#pragma GCC unroll 4
				for (int j = 0; j < 4; j++) {
					__m256i c = _mm256_xor_si256(x[j], load2(buf + 32 * j));

					store2(buf + 32 * j, c);
					a[j] = bswap2(c);
				}
				buf += 128;
				len -= 128;
			}
			p.y = gh8_wide(p.y, a, hy, hky);
		} else {
			while (len >= 128) {
				__m256i x[4], a[4];

#pragma GCC unroll 4
				for (int j = 0; j < 4; j++)
					a[j] = bswap2(load2(buf + 32 * j));
				aes8_wide(x, cy, ky, p.nr);
				cy = _mm256_add_epi32(cy, eight);
				p.y = gh8_wide(p.y, a, hy, hky);
#pragma GCC unroll 4
				for (int j = 0; j < 4; j++)
					store2(buf + 32 * j,
					       _mm256_xor_si256(x[j], load2(buf + 32 * j)));
				buf += 128;
				len -= 128;
			}
		}
		p.ctr = _mm256_castsi256_si128(cy);
		wipe(ky, sizeof(ky));
		wipe(hy, sizeof(hy));
		wipe(hky, sizeof(hky));
	}
	pass_end(&p, buf, len, enc, total, tag);
}

static void pass_run(const struct gcm_rec *cc, const unsigned char *nonce, const unsigned char *aad,
		     unsigned char *buf, size_t len, bool enc, unsigned char *tag)
{
	if (cc->wide)
		gcm_pass_wide(cc, nonce, aad, buf, len, enc, tag);
	else
		gcm_pass(cc, nonce, aad, buf, len, enc, tag);
}

static void rec_aad(unsigned char *aad, uint64_t seq, int type, unsigned version, size_t len)
{
	put_be64(aad, seq);
	aad[8] = (unsigned char)type;
	put_be16(aad + 9, version);
	put_be16(aad + 11, (unsigned)len);
}

static const br_sslrec_in_gcm_class in_vtable;
static const br_sslrec_out_gcm_class out_vtable;

static void in_init(const br_sslrec_in_gcm_class **ctx, const br_block_ctr_class *bc_impl,
		    const void *key, size_t key_len, br_ghash gh_impl, const void *iv)
{
	struct gcm_rec *cc = (struct gcm_rec *)(void *)ctx;

	(void)bc_impl;
	(void)gh_impl;
	cc->vtable.in = &in_vtable;
	rec_init(cc, key, key_len, iv);
}

static void out_init(const br_sslrec_out_gcm_class **ctx, const br_block_ctr_class *bc_impl,
		     const void *key, size_t key_len, br_ghash gh_impl, const void *iv)
{
	struct gcm_rec *cc = (struct gcm_rec *)(void *)ctx;

	(void)bc_impl;
	(void)gh_impl;
	cc->vtable.out = &out_vtable;
	rec_init(cc, key, key_len, iv);
}

/* 8 bytes of explicit nonce before the ciphertext, 16 of tag after it. */
static int in_check_length(const br_sslrec_in_class *const *ctx, size_t rlen)
{
	(void)ctx;
	return rlen >= 24 && rlen <= 16384 + 24;
}

static unsigned char *in_decrypt(const br_sslrec_in_class **ctx, int type, unsigned version,
				 void *data, size_t *data_len)
{
	struct gcm_rec *cc = (struct gcm_rec *)(void *)ctx;
	unsigned char *buf = (unsigned char *)data + 8, aad[13], tag[16];
	size_t len = *data_len - 24;
	unsigned bad = 0;

	rec_aad(aad, cc->seq++, type, version, len);
	pass_run(cc, data, aad, buf, len, false, tag);
	for (int i = 0; i < 16; i++)
		bad |= tag[i] ^ buf[len + i];
	if (bad)
		return NULL;
	*data_len = len;
	return buf;
}

static void out_max_plaintext(const br_sslrec_out_class *const *ctx, size_t *start, size_t *end)
{
	size_t len;

	(void)ctx;
	*start += 8;
	len = *end - *start - 16;
	if (len > 16384)
		len = 16384;
	*end = *start + len;
}

static unsigned char *out_encrypt(const br_sslrec_out_class **ctx, int type, unsigned version,
				  void *data, size_t *data_len)
{
	struct gcm_rec *cc = (struct gcm_rec *)(void *)ctx;
	unsigned char *buf = data, aad[13];
	size_t len = *data_len;

	put_be64(buf - 8, cc->seq);
	rec_aad(aad, cc->seq++, type, version, len);
	pass_run(cc, buf - 8, aad, buf, len, true, buf + len);
	buf -= 13;
	buf[0] = (unsigned char)type;
	put_be16(buf + 1, version);
	put_be16(buf + 3, (unsigned)(len + 24));
	*data_len = len + 24 + 5;
	return buf;
}

static const br_sslrec_in_gcm_class in_vtable = {
	{sizeof(struct gcm_rec), in_check_length, in_decrypt},
	in_init,
};

static const br_sslrec_out_gcm_class out_vtable = {
	{sizeof(struct gcm_rec), out_max_plaintext, out_encrypt},
	out_init,
};

/* ---- getters --------------------------------------------------------------------------------- */

const br_block_ctr_class *tls_gcm_ctr_get(void)
{
	return cpu_ok() ? &ctr_vtable : NULL;
}

br_ghash tls_gcm_ghash_get(void)
{
	return cpu_ok() ? gcm_ghash : NULL;
}

const br_sslrec_in_gcm_class *tls_gcm_in_get(void)
{
	return cpu_ok() ? &in_vtable : NULL;
}

const br_sslrec_out_gcm_class *tls_gcm_out_get(void)
{
	return cpu_ok() ? &out_vtable : NULL;
}
