/* Shared TLS test certificates for the HTTP(S) client tests (pkg/httpc, pkg/watch). */
#ifndef AMBIENT_TEST_TLS_FIXTURES_H
#define AMBIENT_TEST_TLS_FIXTURES_H

#include "pkg/x509/x509.h"

#include <string.h>

/* P-256, valid until 2126: a root, an unrelated root, and leaves signed by the root for
 * "localhost, 127.0.0.1, ::1" (SRV1), "elsewhere.test, 127.0.0.2" (SRV2) and no SAN at all
 * (SRV3). All three leaves share PEM_SRV_KEY. Test-only material: never used outside tests. */
static const char PEM_ROOT[] = "-----BEGIN CERTIFICATE-----\n"
			       "MIIBsDCCAVWgAwIBAgIUK3rhCbzPWbEgZCHsR3BB7ITl/6QwCgYIKoZIzj0EAwIw\n"
			       "JDETMBEGA1UECgwKd2F0Y2gtdGVzdDENMAsGA1UEAwwEcm9vdDAgFw0yNjExMjYx\n"
			       "NDI3MDFaGA8yMTI2MTEwMjE0MjcwMVowJDETMBEGA1UECgwKd2F0Y2gtdGVzdDEN\n"
			       "MAsGA1UEAwwEcm9vdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABMhVlm38gIyU\n"
			       "OfPITDtz78TVTWYohBnLM84ZqUqYMXRgU3RJP1SGHIUL8G/lKGfcAOBH1F6TxT+D\n"
			       "HydO5LJH+LijYzBhMB0GA1UdDgQWBBRDxra6Zd2+GGUdk6SkZDEc2ptjdTAfBgNV\n"
			       "HSMEGDAWgBRDxra6Zd2+GGUdk6SkZDEc2ptjdTAPBgNVHRMBAf8EBTADAQH/MA4G\n"
			       "A1UdDwEB/wQEAwIBBjAKBggqhkjOPQQDAgNJADBGAiEA6CnlLufsbJn6ytZoZA5J\n"
			       "wS7jvU7KHKm6TaIbez2m3zMCIQDUse8Yytz0z1ZM2Ea/1UeQGqA7LK8qs2p4ugGd\n"
			       "d8pUOA==\n"
			       "-----END CERTIFICATE-----\n";
static const char PEM_OTHER[] = "-----BEGIN CERTIFICATE-----\n"
				"MIIBuzCCAWGgAwIBAgIURSmWGpjqbhjFAoaiQ3GMLcdwC7cwCgYIKoZIzj0EAwIw\n"
				"KjETMBEGA1UECgwKd2F0Y2gtdGVzdDETMBEGA1UEAwwKb3RoZXItcm9vdDAgFw0y\n"
				"NjExMjYxNDI3MDFaGA8yMTI2MTEwMjE0MjcwMVowKjETMBEGA1UECgwKd2F0Y2gt\n"
				"dGVzdDETMBEGA1UEAwwKb3RoZXItcm9vdDBZMBMGByqGSM49AgEGCCqGSM49AwEH\n"
				"A0IABMS2p42+oNOAuOlcvlsHIPMZTSnzQym5W1eZz6XMvjDIaTsqEtIpAibUkCTt\n"
				"5pKpurksQdX/7b7WqXm9/jzJblujYzBhMB0GA1UdDgQWBBQub+oYE+/3DO5tQaD8\n"
				"wSjLuEK+GzAfBgNVHSMEGDAWgBQub+oYE+/3DO5tQaD8wSjLuEK+GzAPBgNVHRMB\n"
				"Af8EBTADAQH/MA4GA1UdDwEB/wQEAwIBBjAKBggqhkjOPQQDAgNIADBFAiA1Z0GL\n"
				"QOsnzaITX5U+qOvVwe7Ou/go9UIhU0ejzA1nwAIhAIyItAdN5z0Y2fEMv0bHEEMj\n"
				"sMjZw8pnL11OsIt97uCq\n"
				"-----END CERTIFICATE-----\n";
static const char PEM_SRV1[] = "-----BEGIN CERTIFICATE-----\n"
			       "MIIB2DCCAX6gAwIBAgIUMFvQWpk3cRXK03zRhKAHVnxUUEYwCgYIKoZIzj0EAwIw\n"
			       "JDETMBEGA1UECgwKd2F0Y2gtdGVzdDENMAsGA1UEAwwEcm9vdDAgFw0yNjExMjYx\n"
			       "NDI3MDFaGA8yMTI2MTEwMjE0MjcwMVowDjEMMAoGA1UEAwwDc3J2MFkwEwYHKoZI\n"
			       "zj0CAQYIKoZIzj0DAQcDQgAEY0QT60iQceqD3MHR4mNDjY9Q8En4A8nMD1PljrA6\n"
			       "Pk6/1ndgzPNL3x02QD8RnKTNbMqWxYBRfx6x8xvzZhktGaOBoTCBnjAJBgNVHRME\n"
			       "AjAAMA4GA1UdDwEB/wQEAwIHgDATBgNVHSUEDDAKBggrBgEFBQcDATAsBgNVHREE\n"
			       "JTAjgglsb2NhbGhvc3SHBH8AAAGHEAAAAAAAAAAAAAAAAAAAAAEwHQYDVR0OBBYE\n"
			       "FOhxfzTY5NV21uU7s76QC2x22weXMB8GA1UdIwQYMBaAFEPGtrpl3b4YZR2TpKRk\n"
			       "MRzam2N1MAoGCCqGSM49BAMCA0gAMEUCIHSRRvJ73xPejvpzXgB8DeJtlDRV4khn\n"
			       "P5lYKitStmTnAiEAqxZWY31i0IfiV8YLmy5GFrhrd6zG8QmmGoKFIuF+UoM=\n"
			       "-----END CERTIFICATE-----\n";
static const char PEM_SRV2[] = "-----BEGIN CERTIFICATE-----\n"
			       "MIIByzCCAXGgAwIBAgIUMFvQWpk3cRXK03zRhKAHVnxUUEcwCgYIKoZIzj0EAwIw\n"
			       "JDETMBEGA1UECgwKd2F0Y2gtdGVzdDENMAsGA1UEAwwEcm9vdDAgFw0yNjExMjYx\n"
			       "NDI3MDFaGA8yMTI2MTEwMjE0MjcwMVowDjEMMAoGA1UEAwwDc3J2MFkwEwYHKoZI\n"
			       "zj0CAQYIKoZIzj0DAQcDQgAEY0QT60iQceqD3MHR4mNDjY9Q8En4A8nMD1PljrA6\n"
			       "Pk6/1ndgzPNL3x02QD8RnKTNbMqWxYBRfx6x8xvzZhktGaOBlDCBkTAJBgNVHRME\n"
			       "AjAAMA4GA1UdDwEB/wQEAwIHgDATBgNVHSUEDDAKBggrBgEFBQcDATAfBgNVHREE\n"
			       "GDAWgg5lbHNld2hlcmUudGVzdIcEfwAAAjAdBgNVHQ4EFgQU6HF/NNjk1XbW5Tuz\n"
			       "vpALbHbbB5cwHwYDVR0jBBgwFoAUQ8a2umXdvhhlHZOkpGQxHNqbY3UwCgYIKoZI\n"
			       "zj0EAwIDSAAwRQIgLX+ZrG3lCB2s1htwS0ZpCB2Vkf4BPQuanCo+mOmETPgCIQDZ\n"
			       "8DAvSS4pSq4hx5TK0miGIKqlvxE3bcl3eEvry8waBQ==\n"
			       "-----END CERTIFICATE-----\n";
static const char PEM_SRV3[] = "-----BEGIN CERTIFICATE-----\n"
			       "MIIBqDCCAU6gAwIBAgIUMFvQWpk3cRXK03zRhKAHVnxUUEgwCgYIKoZIzj0EAwIw\n"
			       "JDETMBEGA1UECgwKd2F0Y2gtdGVzdDENMAsGA1UEAwwEcm9vdDAgFw0yNjExMjYx\n"
			       "NDI3MDFaGA8yMTI2MTEwMjE0MjcwMVowDjEMMAoGA1UEAwwDc3J2MFkwEwYHKoZI\n"
			       "zj0CAQYIKoZIzj0DAQcDQgAEY0QT60iQceqD3MHR4mNDjY9Q8En4A8nMD1PljrA6\n"
			       "Pk6/1ndgzPNL3x02QD8RnKTNbMqWxYBRfx6x8xvzZhktGaNyMHAwCQYDVR0TBAIw\n"
			       "ADAOBgNVHQ8BAf8EBAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUHAwEwHQYDVR0OBBYE\n"
			       "FOhxfzTY5NV21uU7s76QC2x22weXMB8GA1UdIwQYMBaAFEPGtrpl3b4YZR2TpKRk\n"
			       "MRzam2N1MAoGCCqGSM49BAMCA0gAMEUCIGln7ME//KxTTPGHSbWr/4pSOGKmG3aK\n"
			       "qsMPwbiGQBqLAiEAlVM4vvWDxZjpAwsXM9pbeAf7q+FAG4vZ1nhSFLUnAZI=\n"
			       "-----END CERTIFICATE-----\n";
static const char PEM_SRV_KEY[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgDcDIKdJlPi7D5TbS\n"
	"nIWf+CAQbQhqpwcktR3R9US7WIKhRANCAARjRBPrSJBx6oPcwdHiY0ONj1DwSfgD\n"
	"ycwPU+WOsDo+Tr/Wd2DM80vfHTZAPxGcpM1sypbFgFF/HrHzG/NmGS0Z\n"
	"-----END PRIVATE KEY-----\n";

/* DER of the first PEM block in pem (copied into out); 0 on failure or if it does not fit. */
static inline size_t pem_der(const char *pem, uint8_t *out, size_t cap)
{
	struct x509_pem_list l = {0};
	size_t n = 0;

	if (x509_pem_parse(pem, strlen(pem), &l, NULL) == 0 && l.n > 0 && l.v[0].len <= cap) {
		memcpy(out, l.v[0].der, l.v[0].len);
		n = l.v[0].len;
	}
	x509_pem_list_fini(&l);
	return n;
}

#endif
