/* Readable text, project error classes and alert numbers for BearSSL's and our TLS errors. */
#include "pkg/tls/tls_int.h"

/* RFC 5246 §7.2 and later registrations; text for both directions built at compile time. */
#define TLS_ALERTS(X)                                                                              \
	X(0, "close_notify")                                                                       \
	X(10, "unexpected_message")                                                                \
	X(20, "bad_record_mac")                                                                    \
	X(21, "decryption_failed")                                                                 \
	X(22, "record_overflow")                                                                   \
	X(30, "decompression_failure")                                                             \
	X(40, "handshake_failure")                                                                 \
	X(41, "no_certificate")                                                                    \
	X(42, "bad_certificate")                                                                   \
	X(43, "unsupported_certificate")                                                           \
	X(44, "certificate_revoked")                                                               \
	X(45, "certificate_expired")                                                               \
	X(46, "certificate_unknown")                                                               \
	X(47, "illegal_parameter")                                                                 \
	X(48, "unknown_ca")                                                                        \
	X(49, "access_denied")                                                                     \
	X(50, "decode_error")                                                                      \
	X(51, "decrypt_error")                                                                     \
	X(60, "export_restriction")                                                                \
	X(70, "protocol_version")                                                                  \
	X(71, "insufficient_security")                                                             \
	X(80, "internal_error")                                                                    \
	X(86, "inappropriate_fallback")                                                            \
	X(90, "user_canceled")                                                                     \
	X(100, "no_renegotiation")                                                                 \
	X(109, "missing_extension")                                                                \
	X(110, "unsupported_extension")                                                            \
	X(112, "unrecognized_name")                                                                \
	X(113, "bad_certificate_status_response")                                                  \
	X(115, "unknown_psk_identity")                                                             \
	X(116, "certificate_required")                                                             \
	X(120, "no_application_protocol")

struct alert_text {
	int alert;
	const char *recv;
	const char *sent;
};

#define TLS_ALERT_ROW(n, name)                                                                     \
	{n, "peer sent alert " name " (" #n ")", "sent alert " name " (" #n ")"},
static const struct alert_text alerts[] = {TLS_ALERTS(TLS_ALERT_ROW)};

static const char *alert_str(int alert, bool recv)
{
	/* Alerts whose usual cause is worth naming. */
	if (alert == 120)
		return recv ? "ALPN mismatch (peer sent no_application_protocol)"
			    : "ALPN mismatch (no common protocol)";
	if (alert == 40 && recv)
		return "peer sent alert handshake_failure (40): no shared cipher suite, curve or "
		       "ALPN, or our certificate was refused";
	for (size_t i = 0; i < ARRAY_LEN(alerts); i++) {
		if (alerts[i].alert == alert)
			return recv ? alerts[i].recv : alerts[i].sent;
	}
	return recv ? "peer sent an unknown alert" : "sent an unknown alert";
}

static const char *x509_str(int code)
{
	switch (code) {
	case BR_ERR_X509_INVALID_VALUE: return "bad certificate: invalid value";
	case BR_ERR_X509_TRUNCATED: return "bad certificate: truncated";
	case BR_ERR_X509_EMPTY_CHAIN: return "empty certificate chain";
	case BR_ERR_X509_INNER_TRUNC: return "bad certificate: inner element overflows its parent";
	case BR_ERR_X509_BAD_TAG_CLASS:
	case BR_ERR_X509_BAD_TAG_VALUE:
	case BR_ERR_X509_INDEFINITE_LENGTH:
	case BR_ERR_X509_EXTRA_ELEMENT:
	case BR_ERR_X509_UNEXPECTED:
	case BR_ERR_X509_NOT_CONSTRUCTED:
	case BR_ERR_X509_NOT_PRIMITIVE:
	case BR_ERR_X509_PARTIAL_BYTE:
	case BR_ERR_X509_BAD_BOOLEAN:
	case BR_ERR_X509_OVERFLOW: return "bad certificate: malformed DER";
	case BR_ERR_X509_BAD_DN: return "bad certificate: invalid distinguished name";
	case BR_ERR_X509_BAD_TIME: return "bad certificate: invalid validity time";
	case BR_ERR_X509_UNSUPPORTED: return "bad certificate: unsupported algorithm";
	case BR_ERR_X509_LIMIT_EXCEEDED: return "bad certificate: element too large";
	case BR_ERR_X509_WRONG_KEY_TYPE: return "bad certificate: signature and key types differ";
	case BR_ERR_X509_BAD_SIGNATURE: return "bad certificate: signature does not verify";
	case BR_ERR_X509_TIME_UNKNOWN: return "certificate validation time unknown";
	case BR_ERR_X509_EXPIRED: return "certificate expired or not yet valid";
	case BR_ERR_X509_DN_MISMATCH: return "certificate issuer name does not match its issuer";
	case BR_ERR_X509_BAD_SERVER_NAME: return "certificate does not match the server name";
	case BR_ERR_X509_CRITICAL_EXTENSION:
		return "certificate has an unsupported critical extension";
	case BR_ERR_X509_NOT_CA: return "issuer certificate is not a CA";
	case BR_ERR_X509_FORBIDDEN_KEY_USAGE: return "certificate key usage forbids this use";
	case BR_ERR_X509_WEAK_PUBLIC_KEY: return "certificate key is too weak";
	case BR_ERR_X509_NOT_TRUSTED: return "certificate not trusted (unknown CA)";
	default: return "bad certificate";
	}
}

static const char *ours_str(int code)
{
	switch (code) {
	case TLS_ERR_REJECTED: return "peer certificate rejected";
	case TLS_ERR_PEER_KEY: return "peer certificate key is not ECDSA P-256";
	case TLS_ERR_ALPN: return "ALPN mismatch (no common protocol)";
	case TLS_ERR_CHAIN_LIMIT: return "peer certificate chain too long";
	case TLS_ERR_TRUNCATED: return "connection closed without close_notify (truncated)";
	case TLS_ERR_EOF_HANDSHAKE: return "connection closed during the handshake";
	case TLS_ERR_IO: return "socket error";
	case TLS_ERR_NO_SHARED_CIPHER:
		return "no shared cipher suite (TLS 1.2 ECDHE-ECDSA with AES-GCM or "
		       "ChaCha20-Poly1305 on P-256)";
	default: return "unknown error";
	}
}

static const char *engine_str(int code)
{
	switch (code) {
	case BR_ERR_OK: return "";
	case BR_ERR_BAD_PARAM: return "bad parameter";
	case BR_ERR_BAD_STATE: return "bad state";
	case BR_ERR_UNSUPPORTED_VERSION: return "unsupported protocol version (TLS 1.2 only)";
	case BR_ERR_BAD_VERSION: return "unexpected record version";
	case BR_ERR_BAD_LENGTH: return "bad record length";
	case BR_ERR_TOO_LARGE: return "record or handshake message too large";
	case BR_ERR_BAD_MAC: return "bad record MAC (decryption failed)";
	case BR_ERR_NO_RANDOM: return "no entropy";
	case BR_ERR_UNKNOWN_TYPE: return "unknown record type (not TLS?)";
	case BR_ERR_UNEXPECTED: return "unexpected message";
	case BR_ERR_BAD_CCS: return "bad ChangeCipherSpec";
	case BR_ERR_BAD_ALERT: return "bad alert";
	case BR_ERR_BAD_HANDSHAKE: return "malformed handshake message";
	case BR_ERR_OVERSIZED_ID: return "oversized session ID";
	case BR_ERR_BAD_CIPHER_SUITE: return "server chose a cipher suite we did not offer";
	case BR_ERR_BAD_COMPRESSION: return "unsupported compression";
	case BR_ERR_BAD_FRAGLEN: return "bad max fragment length";
	case BR_ERR_BAD_SECRENEG: return "secure renegotiation failed";
	case BR_ERR_EXTRA_EXTENSION: return "unexpected extension";
	case BR_ERR_BAD_SNI: return "bad server name indication";
	case BR_ERR_BAD_HELLO_DONE: return "bad ServerHelloDone";
	case BR_ERR_LIMIT_EXCEEDED: return "limit exceeded (peer key too large?)";
	case BR_ERR_BAD_FINISHED: return "bad Finished (handshake tampered with)";
	case BR_ERR_RESUME_MISMATCH: return "session resumption mismatch";
	case BR_ERR_INVALID_ALGORITHM: return "unsupported curve or signature algorithm";
	case BR_ERR_BAD_SIGNATURE: return "bad handshake signature";
	case BR_ERR_WRONG_KEY_USAGE: return "peer key type or usage does not fit the cipher suite";
	case BR_ERR_NO_CLIENT_AUTH: return "no client certificate";
	case BR_ERR_IO: return "I/O error";
	default: return "TLS engine error";
	}
}

const char *tls_error_str(int code)
{
	if (code >= TLS_ERR_REJECTED)
		return ours_str(code);
	if (code >= BR_ERR_SEND_FATAL_ALERT)
		return alert_str(code - BR_ERR_SEND_FATAL_ALERT, false);
	if (code >= BR_ERR_RECV_FATAL_ALERT)
		return alert_str(code - BR_ERR_RECV_FATAL_ALERT, true);
	if (code >= BR_ERR_X509_OK)
		return x509_str(code);
	return engine_str(code);
}

int tls_error_class(int code)
{
	if (code == 0)
		return 0;
	switch (code) {
	case TLS_ERR_REJECTED: return E_DENIED;
	case TLS_ERR_PEER_KEY:
	case BR_ERR_NO_CLIENT_AUTH:
	case BR_ERR_WRONG_KEY_USAGE:
	case BR_ERR_BAD_MAC:
	case BR_ERR_BAD_FINISHED:
	case BR_ERR_BAD_SIGNATURE: return E_CRYPTO;
	case TLS_ERR_TRUNCATED:
	case TLS_ERR_EOF_HANDSHAKE: return E_CLOSED;
	case TLS_ERR_IO: return E_IO;
	case TLS_ERR_CHAIN_LIMIT: return E_LIMIT;
	default: break;
	}
	if (code >= BR_ERR_X509_OK && code < BR_ERR_RECV_FATAL_ALERT)
		return E_CRYPTO;
	return E_PROTO;
}

unsigned tls_error_alert(int code)
{
	switch (code) {
	case BR_ERR_X509_EXPIRED: return 45;	 /* certificate_expired */
	case BR_ERR_X509_NOT_TRUSTED: return 48; /* unknown_ca */
	case BR_ERR_X509_CRITICAL_EXTENSION:	 /* unsupported_certificate */
	case BR_ERR_WRONG_KEY_USAGE:
	case TLS_ERR_PEER_KEY: return 43;
	case BR_ERR_NO_CLIENT_AUTH: return 40; /* TLS 1.2 has no certificate_required */
	case TLS_ERR_ALPN: return 120;	       /* no_application_protocol, RFC 7301 §3.2 */
	case TLS_ERR_REJECTED:
	case TLS_ERR_CHAIN_LIMIT: return 42; /* bad_certificate */
	default: break;
	}
	if (code > BR_ERR_X509_OK && code < BR_ERR_RECV_FATAL_ALERT)
		return 42;
	return 0;
}
