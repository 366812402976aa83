#!/usr/bin/python3
"""Write the seed corpora of the fuzz targets (fuzz/corpus/<target>/).

    fuzz/make_corpus.py [--check]

Seeds are RFC examples (the vectors of docs/INTEROP.md, byte for byte),
realistic SMTP sessions, a sample posternd.conf and passwd lines.  Files
this script does not write (crash-* reproducers, inputs libFuzzer added)
are left alone.  --check only reports seeds that differ from what is on
disk (exit 1).

Input formats (see each fuzz_<target>.c): the SASL targets take a
mechanism byte and an option byte, then messages separated by 0xff; smtp_server and smtp_client take
two option bytes, then the peer's bytes; smtp_layer two option bytes,
then client messages separated by 0xff; mime takes two option bytes, then
fields separated by 0xff.
"""
import base64
import hashlib
import hmac
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SEP = b"\xff"
SEEDS = {}


def seed(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    key = (target, name)
    assert key not in SEEDS, key
    SEEDS[key] = data


def msgs(opt, *parts):
    return bytes([opt]) + SEP.join(p.encode() if isinstance(p, str) else p
                                  for p in parts)


# --- RFC vectors (docs/INTEROP.md) ----------------------------------------

PLAIN_TIM = b"\0tim\0tanstaaftanstaaf"          # RFC 4616 §4
PLAIN_URSEL = b"Ursel\0Kurt\0xipj3plmq"        # RFC 4616 §4
PLAIN_TEST = b"test\0test\x001234"             # RFC 4954 §4.1
CRAM_CHAL = "<1896.697170952@postoffice.reston.mci.net>"   # RFC 2195 §2
CRAM_RESP = "tim b913a602c7eda7a495b4e6e7334d3890"
CRAM_4954 = "rjs3 ec3a59fed395aba1ec6367c4f4b41ac0"       # RFC 4954 §4.1
DIGEST_CHAL = ('realm="elwood.innosoft.com",nonce="OA6MG9tEQGm2hh",'
               'qop="auth",algorithm=md5-sess,charset=utf-8')  # RFC 2831 §4
DIGEST_RESP = ('charset=utf-8,username="chris",realm="elwood.innosoft.com",'
               'nonce="OA6MG9tEQGm2hh",nc=00000001,cnonce="OA6MHXh6VqTrRk",'
               'digest-uri="imap/elwood.innosoft.com",'
               'response=d388dad90d4bbd760a152321f2143af7,qop=auth')
DIGEST_FINAL = "rspauth=ea40f60335c427b5527b84dbabcdfffd"
DIGEST_ACAP_CHAL = ('realm="elwood.innosoft.com",nonce="OA9BSXrbuRhWay",'
                    'qop="auth",algorithm=md5-sess,charset=utf-8')
DIGEST_ACAP_RESP = ('charset=utf-8,username="chris",'
                    'realm="elwood.innosoft.com",nonce="OA9BSXrbuRhWay",'
                    'nc=00000001,cnonce="OA9BSuZWMSpW8m",'
                    'digest-uri="acap/elwood.innosoft.com",'
                    'response=6084c6db3fede7352c551284490fd0fc,qop=auth')
DIGEST_ACAP_FINAL = "rspauth=2f0b3d7c3c2e486600ef710726aa2eae"
SCRAM1 = [  # RFC 5802 §5
    "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
    "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
    "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
]
SCRAM256 = [  # RFC 7677 §3
    "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
]

# Mechanism numbers of fuzz_sasl_server.c / fuzz_sasl_client.c (their
# first byte; the second holds the option bits).
(PLAIN, LOGIN, CRAM, DIGEST, SHA1, SHA256, OAUTHBEARER, XOAUTH2,
 SHA256_PLUS, SHA1_PLUS, EXTERNAL) = range(11)
# sasl_server option bits.
S_PLUS_OFFERED, S_NO_CERT, S_QOP_INT = 0x01, 0x02, 0x04
S_CRED_RFC, S_CRED_NONE, S_CRED_PENCIL, S_CRED_STORED = (0, 8, 16, 24)
S_IR, S_PROBE, S_SECRET = 0x20, 0x40, 0x80
# sasl_client option bits.
C_AUTHZID, C_NO_IR, C_ANY_ITER, C_CB, C_QOP_INT = (0x08, 0x10, 0x20, 0x40,
                                                    0x80)


def smsgs(mech, opt, *parts):
    return bytes([mech]) + msgs(opt, *parts)


# RFC 7628 §4 (OAUTHBEARER) and Google's XOAUTH2 documentation.
OB_TOKEN = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
OB_143 = ("n,a=user@example.com,\x01host=server.example.com\x01port=143"
          "\x01auth=Bearer " + OB_TOKEN + "\x01\x01")
OB_EMPTY_AUTH = ("n,a=user@example.com,\x01host=server.example.com"
                 "\x01port=143\x01auth=\x01\x01")
OB_ERR = ('{"status":"invalid_token","scope":"example_scope",'
          '"openid-configuration":'
          '"https://example.com/.well-known/openid-config"}')
OB_ERR_SMTP = ('{"status":"invalid_token","schemes":"bearer mac",'
               '"scope":"https://mail.example.com/"}')
XO_TOKEN = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
XO_IR = ("user=someuser@example.com\x01auth=Bearer " + XO_TOKEN +
         "\x01\x01")
XO_ERR = ('{"status":"401","schemes":"bearer mac",'
          '"scope":"https://mail.google.com/"}\n')


# tests/unit/test_scram_plus.c (computed outside postern).
PLUS256 = [
    "p=tls-exporter,,n=user,r=rOprNGfwEbeRWgbNEkqO",
    SCRAM256[1],
    "c=cD10bHMtZXhwb3J0ZXIsLAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f,"
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=QC6CS20quADQRb3mT99YUH+n3VJxUvzuK0K0E1Vrs2M=",
    "v=2GiAgapEppLVlUXbxUDksL3VgYHzuqiK5tR4mhJGgvs=",
]
PLUS1 = [
    "p=tls-unique,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
    SCRAM1[1],
    "c=cD10bHMtdW5pcXVlLCygoaKjpKWmp6ipqqs=,"
    "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
    "p=Dnxqb/XkEZw7Mr9zpPANRKxQJ5E=",
    "v=Fd8XThniH1Drtsd3mQW3glgmVd8=",
]
Y256 = [
    "y,,n=user,r=rOprNGfwEbeRWgbNEkqO",
    SCRAM256[1],
    "c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=FoqiHTtQEDE8lz1CdaEe3tK4mS+iMDTl77SPyDS53DY=",
    "v=dI4KpiQJwBr1+V+K6U1dA6l6I4I9DUNXWND4pcpRU3U=",
]


# RFC 2831 §4's IMAP example with qop=auth-int, and protected buffers
# (tests/unit/test_digest_layer.c, computed outside postern).
INT_CHAL = ('realm="elwood.innosoft.com",nonce="OA6MG9tEQGm2hh",'
            'qop="auth,auth-int",charset=utf-8,algorithm=md5-sess')
INT_RESP = ('charset=utf-8,username="chris",realm="elwood.innosoft.com",'
            'nonce="OA6MG9tEQGm2hh",nc=00000001,cnonce="OA6MHXh6VqTrRk",'
            'digest-uri="imap/elwood.innosoft.com",'
            'response=89fdc8198a2499ec4b6d0045c00ae24a,qop=auth-int')
INT_RSPAUTH = "rspauth=2342e4b9b84956beda20b94d83cc8fe0"


def int_wrap(key_magic, seq, msg):
    a1 = hashlib.md5(hashlib.md5(b"chris:elwood.innosoft.com:secret")
                     .digest() + b":OA6MG9tEQGm2hh:OA6MHXh6VqTrRk").digest()
    k = hashlib.md5(a1 + b"Digest session key to " + key_magic +
                    b" signing key magic constant").digest()
    sq = seq.to_bytes(4, "big")
    body = msg + hmac.new(k, sq + msg, hashlib.md5).digest()[:10] + \
        b"\x00\x01" + sq
    return len(body).to_bytes(4, "big") + body


# qop=auth-conf (test_digest_conf.c): 3DES from the client, RC4 from the
# server.
CONF_RESP = ('charset=utf-8,username="chris",realm="elwood.innosoft.com",'
             'nonce="OA6MG9tEQGm2hh",nc=00000001,cnonce="OA6MHXh6VqTrRk",'
             'digest-uri="imap/elwood.innosoft.com",'
             'response=c7d2efa41f50398d289b732a0c09f381,qop=auth-conf,'
             'cipher=')
CONF_RSPAUTH = "rspauth=e2b2f2d1742ec87e03e40f22efdeaac8"
CONF_3DES_C0 = bytes.fromhex(
    "000000269c62b528985851268973960fa77af1f9797e8d0b84a07faabbcc6ecfc416"
    "d5ec000100000000")
CONF_3DES_C1 = bytes.fromhex(
    "000000160753797a81442bc83efb16a8189aab77000100000001")
CONF_RC4_S0 = bytes.fromhex(
    "000000271309742daff079136dc8df9af322addb1856767e79aacaf858830a78d561"
    "82e462000100000000")
INT_C0 = int_wrap(b"client-to-server", 0, b"EHLO client.example\r\n")
INT_C1 = int_wrap(b"client-to-server", 1, b"")
INT_S0 = int_wrap(b"server-to-client", 0, b"250 mail.example.test\r\n")


def sasl_server():
    t = "sasl_server"
    seed(t, "plain-ir-rfc4616", smsgs(PLAIN, S_IR, PLAIN_TIM))
    seed(t, "plain-two-step", smsgs(PLAIN, 0, PLAIN_TIM))
    seed(t, "plain-authzid-unknown", smsgs(PLAIN, S_IR | S_CRED_NONE,
                                          PLAIN_URSEL))
    seed(t, "plain-wrong-password", smsgs(PLAIN, S_IR | S_CRED_PENCIL |
                                          S_PROBE, PLAIN_TEST))
    seed(t, "plain-stored-scram", smsgs(PLAIN, S_IR | S_CRED_STORED,
                                       b"\0user\0pencil"))
    # Dovecot test-mech.c negative vectors.
    seed(t, "plain-too-many-nuls", smsgs(PLAIN, S_IR,
                                        b"\0fa\0il\0ing\0withthis"))
    seed(t, "plain-no-nul", smsgs(PLAIN, S_IR, b"failingwiththis"))
    seed(t, "plain-one-nul", smsgs(PLAIN, S_IR, b"failing\0withthis"))
    seed(t, "login-rfc", smsgs(LOGIN, 0, "tim", "tanstaaftanstaaf"))
    seed(t, "login-ir", smsgs(LOGIN, S_IR | S_PROBE, "tim",
                             "tanstaaftanstaaf"))
    seed(t, "cram-md5-rfc2195", smsgs(CRAM, 0, CRAM_RESP))
    seed(t, "cram-md5-stored", smsgs(CRAM, S_CRED_STORED, CRAM_RESP))
    seed(t, "cram-md5-rfc4954", smsgs(CRAM, S_CRED_PENCIL, CRAM_4954))
    seed(t, "cram-md5-ir-refused", smsgs(CRAM, S_IR, CRAM_RESP))
    seed(t, "digest-md5-rfc2831", smsgs(DIGEST, 0, DIGEST_RESP, ""))
    seed(t, "digest-md5-stored", smsgs(DIGEST, S_CRED_STORED | S_PROBE,
                                      DIGEST_RESP, ""))
    seed(t, "digest-md5-acap", smsgs(DIGEST, 0, DIGEST_ACAP_RESP, ""))
    seed(t, "digest-md5-unknown", smsgs(DIGEST, S_CRED_NONE, DIGEST_RESP))
    seed(t, "digest-md5-dup-directive",
         smsgs(DIGEST, 0, DIGEST_RESP + ',nonce="OA6MG9tEQGm2hh"'))
    seed(t, "digest-md5-unterminated",
         smsgs(DIGEST, 0, DIGEST_RESP.replace('cnonce="OA6MHXh6VqTrRk"',
                                          'cnonce="OA6MHXh6VqTrRk')))
    seed(t, "scram-sha1-rfc5802", smsgs(SHA1, S_IR, SCRAM1[0], SCRAM1[2],
                                       ""))
    seed(t, "scram-sha1-no-ir", smsgs(SHA1, S_PROBE, SCRAM1[0], SCRAM1[2],
                                     ""))
    seed(t, "scram-sha1-stored", smsgs(SHA1, S_IR | S_CRED_STORED,
                                      SCRAM1[0], SCRAM1[2], ""))
    seed(t, "scram-sha1-unknown-secret", smsgs(SHA1, S_IR | S_CRED_NONE |
                                               S_SECRET, SCRAM1[0],
                                              SCRAM1[2]))
    seed(t, "scram-sha1-forged-nonce",
         smsgs(SHA1, S_IR, SCRAM1[0], SCRAM1[2].replace("3rfc", "4rfc")))
    seed(t, "scram-sha256-rfc7677", smsgs(SHA256, S_IR, SCRAM256[0],
                                         SCRAM256[2], ""))
    seed(t, "scram-sha256-pencil", smsgs(SHA256, S_IR | S_CRED_PENCIL,
                                        SCRAM256[0], SCRAM256[2]))
    seed(t, "scram-masteruser", smsgs(SHA256, S_IR, "n,a=masteruser,,"))
    seed(t, "scram-bad-escape", smsgs(SHA256, S_IR, "n,a==masteruser,,"))
    seed(t, "scram-mandatory-ext", smsgs(SHA1, S_IR, "n,,m=testuser,,"))
    seed(t, "scram-broken", smsgs(SHA1, S_IR, b"broken\0input"))
    seed(t, "oauthbearer-rfc7628", smsgs(OAUTHBEARER, S_IR, OB_143))
    seed(t, "oauthbearer-no-ir", smsgs(OAUTHBEARER, S_PROBE, OB_143))
    seed(t, "oauthbearer-refused", smsgs(OAUTHBEARER, S_IR | S_CRED_NONE,
                                         OB_143, "\x01"))
    seed(t, "oauthbearer-empty-auth", smsgs(OAUTHBEARER, S_IR,
                                            OB_EMPTY_AUTH, "\x01"))
    seed(t, "oauthbearer-wrong-port",
         smsgs(OAUTHBEARER, S_IR, OB_143.replace("port=143", "port=587"),
               "\x01"))
    seed(t, "oauthbearer-unknown-keys",
         smsgs(OAUTHBEARER, S_IR,
               "y,a=a=2Cb,\x01mthd=POST\x01qs=\x01auth=bearer  " +
               OB_TOKEN + "\x01\x01"))
    seed(t, "oauthbearer-gs2-plus",
         smsgs(OAUTHBEARER, S_IR, "p=tls-unique,a=u,\x01auth=Bearer "
               "x\x01\x01"))
    seed(t, "xoauth2-google", smsgs(XOAUTH2, S_IR, XO_IR))
    seed(t, "xoauth2-two-step", smsgs(XOAUTH2, S_PROBE, XO_IR))
    seed(t, "xoauth2-refused", smsgs(XOAUTH2, S_IR | S_CRED_NONE, XO_IR,
                                     ""))
    seed(t, "scram-sha256-plus", smsgs(SHA256_PLUS, S_IR, PLUS256[0],
                                       PLUS256[2], ""))
    seed(t, "scram-sha1-plus", smsgs(SHA1_PLUS, S_PROBE, PLUS1[0],
                                     PLUS1[2], ""))
    seed(t, "scram-sha1-plus-mitm",
         smsgs(SHA1_PLUS, S_IR, PLUS1[0],
               PLUS1[2].replace("LCyg", "LCyh")))
    seed(t, "scram-sha256-plus-n", smsgs(SHA256_PLUS, S_IR, SCRAM256[0]))
    seed(t, "scram-sha256-plus-wrong-type",
         smsgs(SHA256_PLUS, S_IR, PLUS256[0].replace("exporter", "unique")))
    seed(t, "scram-sha256-y", smsgs(SHA256, S_IR, Y256[0], Y256[2], ""))
    seed(t, "scram-sha256-y-downgrade", smsgs(SHA256, S_IR | S_PLUS_OFFERED,
                                              Y256[0]))
    seed(t, "scram-sha256-p-not-plus", smsgs(SHA256, S_IR, PLUS256[0]))
    seed(t, "external-empty", smsgs(EXTERNAL, S_IR, ""))
    seed(t, "external-two-step", smsgs(EXTERNAL, S_PROBE, ""))
    seed(t, "external-authzid", smsgs(EXTERNAL, S_IR, "tim"))
    seed(t, "external-other-authzid", smsgs(EXTERNAL, S_IR, "Ursel"))
    seed(t, "external-no-cert", smsgs(EXTERNAL, S_IR | S_NO_CERT, ""))
    seed(t, "external-unknown", smsgs(EXTERNAL, S_IR | S_CRED_NONE, ""))
    seed(t, "digest-md5-auth-int", smsgs(DIGEST, S_QOP_INT, INT_RESP, "",
                                         INT_C0, INT_C1))
    seed(t, "digest-md5-auth-int-split",
         smsgs(DIGEST, S_QOP_INT, INT_RESP, "", INT_C0[:7], INT_C0[7:] +
               INT_C1))
    seed(t, "digest-md5-auth-int-forged",
         smsgs(DIGEST, S_QOP_INT, INT_RESP, "",
               INT_C0[:30] + bytes([INT_C0[30] ^ 1]) + INT_C0[31:]))
    seed(t, "digest-md5-auth-int-replay",
         smsgs(DIGEST, S_QOP_INT, INT_RESP, "", INT_C0, INT_C0))
    seed(t, "digest-md5-auth-conf-3des",
         smsgs(DIGEST, S_QOP_INT, CONF_RESP + "3des", "", CONF_3DES_C0,
               CONF_3DES_C1))
    seed(t, "digest-md5-auth-conf-3des-forged",
         smsgs(DIGEST, S_QOP_INT, CONF_RESP + "3des", "",
               CONF_3DES_C0[:9] + bytes([CONF_3DES_C0[9] ^ 1]) +
               CONF_3DES_C0[10:]))
    seed(t, "digest-md5-auth-conf-rc4", smsgs(DIGEST, S_QOP_INT,
                                              CONF_RESP + "rc4", ""))
    seed(t, "digest-md5-auth-int-not-offered",
         smsgs(DIGEST, 0, INT_RESP, ""))
    seed(t, "xoauth2-basic", smsgs(XOAUTH2, S_IR,
                                   "user=u\x01auth=Basic dTpw\x01\x01",
                                   ""))


def sasl_client():
    t = "sasl_client"
    seed(t, "plain-ir", smsgs(PLAIN, 0))
    seed(t, "plain-two-step", smsgs(PLAIN, C_NO_IR | C_AUTHZID, ""))
    seed(t, "login", smsgs(LOGIN, C_NO_IR, "Username:", "Password:"))
    seed(t, "login-ir", smsgs(LOGIN, 0, "Password:"))
    seed(t, "cram-md5-rfc2195", smsgs(CRAM, 0, CRAM_CHAL))
    seed(t, "digest-md5-rfc2831", smsgs(DIGEST, C_NO_IR, DIGEST_CHAL,
                                       DIGEST_FINAL))
    seed(t, "digest-md5-bad-rspauth", smsgs(DIGEST, C_NO_IR, DIGEST_CHAL,
                                           DIGEST_ACAP_FINAL))
    seed(t, "digest-md5-quoted-algorithm",
         smsgs(DIGEST, C_NO_IR,
              DIGEST_CHAL.replace("algorithm=md5-sess",
                                  'algorithm="md5-sess"')))
    seed(t, "scram-sha1-rfc5802", smsgs(SHA1, 0, SCRAM1[1], SCRAM1[3]))
    seed(t, "scram-sha1-authzid", smsgs(SHA1, C_AUTHZID, SCRAM1[1],
                                       SCRAM1[3]))
    seed(t, "scram-sha1-no-proof", smsgs(SHA1, 0, SCRAM1[1]))
    seed(t, "scram-sha1-error", smsgs(SHA1, 0, SCRAM1[1], "e=invalid-proof"))
    seed(t, "scram-sha1-one-iteration",
         smsgs(SHA1, C_ANY_ITER, SCRAM1[1].replace("i=4096", "i=1"),
              SCRAM1[3]))
    seed(t, "scram-sha1-weak", smsgs(SHA1, 0, SCRAM1[1].replace("i=4096",
                                                             "i=1")))
    seed(t, "scram-sha256-rfc7677", smsgs(SHA256, 0, SCRAM256[1],
                                         SCRAM256[3]))
    seed(t, "scram-sha256-forged-nonce",
         smsgs(SHA256, 0, SCRAM256[1].replace("rOprNGfwEbeRWgbNEkqO",
                                          "xOprNGfwEbeRWgbNEkqO")))
    seed(t, "scram-sha256-bad-verifier",
         smsgs(SHA256, 0, SCRAM256[1], SCRAM1[3]))
    seed(t, "scram-sha256-plus", smsgs(SHA256_PLUS, 0, PLUS256[1],
                                       PLUS256[3]))
    seed(t, "scram-sha1-plus", smsgs(SHA1_PLUS, 0, PLUS1[1], PLUS1[3]))
    seed(t, "scram-sha256-y", smsgs(SHA256, C_CB, Y256[1], Y256[3]))
    seed(t, "digest-md5-auth-int", smsgs(DIGEST, C_NO_IR | C_QOP_INT,
                                         INT_CHAL, INT_RSPAUTH, INT_S0))
    seed(t, "digest-md5-auth-int-forged",
         smsgs(DIGEST, C_NO_IR | C_QOP_INT, INT_CHAL, INT_RSPAUTH,
               INT_S0[:-1] + b"\x01"))
    seed(t, "digest-md5-auth-conf-rc4",
         smsgs(DIGEST, C_NO_IR | C_QOP_INT,
               'realm="elwood.innosoft.com",nonce="OA6MG9tEQGm2hh",'
               'qop="auth-conf",cipher="rc4",charset=utf-8,'
               'algorithm=md5-sess', CONF_RSPAUTH, CONF_RC4_S0))
    seed(t, "external", smsgs(EXTERNAL, 0))
    seed(t, "external-authzid-two-step", smsgs(EXTERNAL, C_AUTHZID | C_NO_IR,
                                               "", ""))
    seed(t, "oauthbearer-ok", smsgs(OAUTHBEARER, 0))
    seed(t, "oauthbearer-refused", smsgs(OAUTHBEARER, 0, OB_ERR, ""))
    seed(t, "oauthbearer-rfc7628-smtp-error",
         smsgs(OAUTHBEARER, C_NO_IR | C_AUTHZID, "", OB_ERR_SMTP))
    seed(t, "xoauth2-ok", smsgs(XOAUTH2, C_NO_IR, ""))
    seed(t, "xoauth2-google-error", smsgs(XOAUTH2, 0, XO_ERR, "", ""))


def digest_parse():
    t = "digest_parse"
    seed(t, "challenge-rfc2831", DIGEST_CHAL)
    seed(t, "challenge-acap", DIGEST_ACAP_CHAL)
    seed(t, "challenge-two-realms",
         'realm="a.example",realm="b.example",nonce="abc",qop="auth,'
         'auth-int,auth-conf",cipher="rc4,des,3des",maxbuf=65536,'
         'stale=true,algorithm=md5-sess')
    seed(t, "challenge-quoted-algorithm",
         DIGEST_CHAL.replace("algorithm=md5-sess", 'algorithm="md5-sess"'))
    seed(t, "response-rfc2831", DIGEST_RESP)
    seed(t, "response-acap", DIGEST_ACAP_RESP)
    seed(t, "response-authzid-escapes",
         'username="chr\\"is\\\\",nonce="n",nc=00000001,cnonce="c",'
         'digest-uri="smtp/127.0.0.1",qop=auth,authzid="chris",'
         'response=d388dad90d4bbd760a152321f2143af7,maxbuf=1024')
    seed(t, "response-latin1", b'username="J\xf6rg",realm="r",nonce="n",'
         b'nc=00000001,cnonce="c",digest-uri="smtp/mail.example.test",'
         b'response=d388dad90d4bbd760a152321f2143af7')
    seed(t, "response-duplicate-nonce", DIGEST_RESP + ',nonce="x"')
    seed(t, "response-unterminated", DIGEST_RESP[:-9] + 'authzid="chris')
    seed(t, "response-empty-elements", ",,," + DIGEST_RESP + ",,")
    seed(t, "rspauth-rfc2831", DIGEST_FINAL)
    seed(t, "rspauth-acap", DIGEST_ACAP_FINAL)
    seed(t, "utf8-text", "J\u00f6rg \u00e9t\u00e9 caf\u00e9")


def scram_parse():
    t = "scram_parse"
    for i, m in enumerate(SCRAM1):
        seed(t, f"rfc5802-{i + 1}", m)
    for i, m in enumerate(SCRAM256):
        seed(t, f"rfc7677-{i + 1}", m)
    seed(t, "client-first-authzid", "n,a=ad=2Cmin,n=us=3Der,r=abc")
    seed(t, "client-first-cb", "p=tls-exporter,,n=user,r=abc,ext=1")
    seed(t, "client-first-y", "y,,n=user,r=abc")
    seed(t, "masteruser", "n,a=masteruser,,")
    seed(t, "bad-escape", "n,a==masteruser,,")
    seed(t, "mandatory-ext", "n,,m=testuser,,")
    seed(t, "broken", b"broken\0input")
    seed(t, "server-error", "e=other-error")
    seed(t, "server-first-ext", SCRAM1[1] + ",x=ext")


# --- What the fuzz targets' random source gives ---------------------------


class FuzzRand:
    """fuzz_util.c's fuzz_random(): splitmix64, a fresh 64-bit value for
    each call, little-endian.  Seeds below use it to predict the nonces
    and challenges of an exchange, so that they authenticate; if the
    library draws its random bytes in another order, those seeds still
    parse but fail the proof."""

    def __init__(self):
        self.state = 0x706f737465726e

    def _next(self):
        m = (1 << 64) - 1
        self.state = (self.state + 0x9e3779b97f4a7c15) & m
        z = self.state
        z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & m
        z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & m
        return z ^ (z >> 31)

    def get(self, n):
        out = b""
        while len(out) < n:
            out += self._next().to_bytes(8, "little")[:n - len(out)]
        return out


def b64(b):
    return base64.b64encode(b if isinstance(b, bytes) else b.encode()
                            ).decode()


def scram_proofs(hname, user, pw, cnonce, snonce, salt, iters):
    """(client-final-message, server-final-message), RFC 5802 §3."""
    h = getattr(hashlib, hname)
    bare = f"n={user},r={cnonce}"
    first = f"r={cnonce}{snonce},s={b64(salt)},i={iters}"
    without = f"c=biws,r={cnonce}{snonce}"
    am = f"{bare},{first},{without}".encode()
    sp = hashlib.pbkdf2_hmac(hname, pw.encode(), salt, iters)
    ck = hmac.new(sp, b"Client Key", h).digest()
    sk = h(ck).digest()
    sig = hmac.new(sk, am, h).digest()
    proof = bytes(a ^ b for a, b in zip(ck, sig))
    server_sig = hmac.new(hmac.new(sp, b"Server Key", h).digest(), am,
                          h).digest()
    return (f"{without},p={b64(proof)}", f"v={b64(server_sig)}", first)


def digest_values(user, realm, pw, nonce, cnonce, uri, nc="00000001"):
    """(response, rspauth) of RFC 2831 §2.1.2.1, qop=auth, md5-sess."""
    md5 = lambda b: hashlib.md5(b).digest()
    hexmd5 = lambda b: hashlib.md5(b).hexdigest()
    a1 = md5(f"{user}:{realm}:{pw}".encode()) + f":{nonce}:{cnonce}".encode()

    def kd(a2):
        return hexmd5(f"{hexmd5(a1)}:{nonce}:{nc}:{cnonce}:auth:"
                      f"{hexmd5(a2.encode())}".encode())
    return kd(f"AUTHENTICATE:{uri}"), kd(f":{uri}")


# --- SMTP server: client sessions ----------------------------------------

# fuzz_smtp_server.c option byte 0 (listener) and byte 1 (driver).
TLS_NONE, TLS_STARTTLS, TLS_IMPLICIT, TLS_REQUIRE = range(4)
AUTH_REQUIRED, AUTH_OPTIONAL, AUTH_OFF = 0x00, 0x04, 0x08
ABT_NONE, ABT_CHALLENGE, ABT_ALL, ABT_COMPAT = 0x00, 0x10, 0x20, 0x30
SENDER_OFF, LEGACY_AUTH = 0x40, 0x80
FEED_ALL, FEED_BYTE, FEED_SEVEN, FEED_LINE = range(4)
ANS_REJECT3, ANS_TEMP3, ANS_UNKNOWN = 0x04, 0x08, 0x0c
SMALL_LIMITS, FEW_MECHS, OWN_REPLIES, DRIVER_CLOSE = 0x10, 0x20, 0x40, 0x80

PLAIN_USER = "AHVzZXIAcGVuY2ls"        # "\0user\0pencil"
MESSAGE = ("From: user@example.test\r\n"
           "To: bob@example.test\r\n"
           "Subject: scan from the 3rd floor printer\r\n"
           "\r\n"
           "Scanned document attached.\r\n"
           "..a line that started with a dot\r\n"
           "\r\n")


def session(opt0, opt1, *lines):
    body = "".join(l + "\r\n" for l in lines)
    return bytes([opt0, opt1]) + body.encode("latin-1")


def transaction(mail="user@example.test", rcpts=("bob@example.test",),
                message=MESSAGE):
    out = [f"MAIL FROM:<{mail}>"]
    out += [f"RCPT TO:<{r}>" for r in rcpts]
    out += ["DATA", message + "."]
    return out


def smtp_server():
    t = "smtp_server"
    base = TLS_NONE | AUTH_REQUIRED | ABT_ALL
    seed(t, "auth-plain-ir", session(
        base, FEED_LINE, "EHLO printer.example.test",
        f"AUTH PLAIN {PLAIN_USER}", *transaction(), "QUIT"))
    seed(t, "auth-plain-two-step", session(
        base, FEED_SEVEN, "EHLO printer.example.test", "AUTH PLAIN",
        PLAIN_USER, *transaction(), "QUIT"))
    seed(t, "auth-login-two-step", session(
        base | LEGACY_AUTH, FEED_LINE, "EHLO printer.example.test",
        "AUTH LOGIN", "dXNlcg==", "cGVuY2ls", *transaction(), "QUIT"))
    seed(t, "auth-login-ir", session(
        base, FEED_BYTE, "EHLO printer.example.test", "AUTH LOGIN dXNlcg==",
        "cGVuY2ls", "QUIT"))
    seed(t, "auth-plain-wrong-then-right", session(
        base, FEED_LINE, "EHLO printer.example.test",
        "AUTH PLAIN AHVzZXIAd3Jvbmc=", f"AUTH PLAIN {PLAIN_USER}",
        "AUTH PLAIN " + PLAIN_USER, "QUIT"))
    # STARTTLS, then the whole session again under TLS (RFC 3207 §4.2).
    seed(t, "starttls-auth", session(
        TLS_STARTTLS | AUTH_REQUIRED | ABT_NONE, FEED_LINE,
        "EHLO printer.example.test", "AUTH PLAIN " + PLAIN_USER,
        "STARTTLS", "EHLO printer.example.test",
        "AUTH PLAIN " + PLAIN_USER, *transaction(), "QUIT"))
    # CVE-2011-0411: commands glued to STARTTLS must be discarded.
    seed(t, "starttls-injection", session(
        TLS_STARTTLS | AUTH_OPTIONAL, FEED_ALL,
        "EHLO printer.example.test", "STARTTLS", "RSET",
        "MAIL FROM:<evil@example.test>"))
    seed(t, "require-tls", session(
        TLS_REQUIRE | AUTH_OPTIONAL, FEED_LINE, "EHLO x.example.test",
        "MAIL FROM:<a@example.test>", "NOOP", "STARTTLS",
        "EHLO x.example.test", "MAIL FROM:<a@example.test>", "QUIT"))
    seed(t, "implicit-tls", session(
        TLS_IMPLICIT | AUTH_REQUIRED | ABT_NONE, FEED_ALL,
        "EHLO x.example.test", "AUTH PLAIN " + PLAIN_USER,
        *transaction(), "QUIT"))
    # RFC 2920: a pipelined transaction in one write.
    seed(t, "pipelined", session(
        TLS_NONE | AUTH_OPTIONAL | SENDER_OFF, FEED_ALL,
        "EHLO printer.example.test", "AUTH PLAIN " + PLAIN_USER,
        *transaction(rcpts=("a@example.test", "b@example.test",
                            "c@example.test")),
        *transaction(mail=""), "QUIT"))
    seed(t, "too-many-recipients", session(
        TLS_NONE | AUTH_OPTIONAL | SENDER_OFF, FEED_ALL | SMALL_LIMITS,
        "EHLO h.example.test",
        "MAIL FROM:<a@example.test> SIZE=100 BODY=8BITMIME",
        *[f"RCPT TO:<r{i}@example.test>" for i in range(5)],
        "DATA", "x" * 990, "y" * 990, "z" * 200, ".", "QUIT"))
    seed(t, "size-too-big", session(
        TLS_NONE | AUTH_OPTIONAL | SENDER_OFF, FEED_LINE | SMALL_LIMITS,
        "EHLO h.example.test", "MAIL FROM:<a@example.test> SIZE=999999",
        "MAIL FROM:<a@example.test> SIZE=10", "RCPT TO:<b@example.test>",
        "DATA", "x" * 1200, ".", "QUIT"))
    # SMTP smuggling (CVE-2023-51764/5/6): none of these ends the data.
    smuggle = ("Subject: one\r\n\r\nfirst\n.\r\n"
               "MAIL FROM:<evil@example.test>\r\nsecond\r.\r\n"
               "third\n.\nfourth\r\n.\nfifth\r\n")
    seed(t, "smuggling", session(
        TLS_NONE | AUTH_OPTIONAL | SENDER_OFF, FEED_ALL,
        "EHLO h.example.test", *transaction(message=smuggle), "QUIT"))
    seed(t, "smuggling-bytewise", session(
        TLS_NONE | AUTH_OPTIONAL | SENDER_OFF, FEED_BYTE,
        "EHLO h.example.test", *transaction(message=smuggle), "QUIT"))
    # The same under a compatibility profile (bare LF normalized, long
    # lines folded, AUTH after HELO): still nothing ends the data early.
    seed(t, "compat-smuggling", session(
        TLS_NONE | AUTH_OPTIONAL | SENDER_OFF | ABT_COMPAT, FEED_SEVEN,
        "HELO scanner", "AUTH PLAIN " + PLAIN_USER,
        *transaction(message=smuggle + "x" * 2500 + "\n.\n" +
                     "y" * 1200 + "\r\n"), "QUIT"))
    seed(t, "compat-smuggling-bytewise", session(
        TLS_NONE | AUTH_REQUIRED | SENDER_OFF | ABT_COMPAT, FEED_BYTE,
        "HELO scanner", "AUTH LOGIN", "dXNlcg==", "cGVuY2ls",
        *transaction(message="a\nb\r\n.\n" + "z" * 999 + "\n" + smuggle),
        "QUIT"))
    seed(t, "auth-errors", session(
        base | SMALL_LIMITS, FEED_LINE, "EHLO h.example.test",
        "AUTH", "AUTH FOO", "AUTH PLAIN =AAA", "AUTH PLAIN AAA=BBB",
        "AUTH LOGIN", "*", "AUTH CRAM-MD5 dGlt", "AUTH PLAIN =",
        "AUTH PLAIN " + PLAIN_USER, "AUTH PLAIN " + PLAIN_USER,
        "MAIL FROM:<user@example.test>", "AUTH LOGIN", "QUIT"))
    seed(t, "auth-refused", session(
        base, FEED_LINE | ANS_REJECT3 | OWN_REPLIES,
        "EHLO h.example.test", "AUTH PLAIN " + PLAIN_USER,
        "AUTH PLAIN " + PLAIN_USER, "AUTH PLAIN " + PLAIN_USER,
        "AUTH PLAIN " + PLAIN_USER, *transaction(), "QUIT"))
    seed(t, "auth-tempfail", session(
        base, FEED_LINE | ANS_TEMP3, "EHLO h.example.test",
        "AUTH LOGIN", "dXNlcg==", "cGVuY2ls", "AUTH PLAIN " + PLAIN_USER,
        *transaction(), *transaction(), "QUIT"))
    seed(t, "unknown-user", session(
        base, FEED_LINE | ANS_UNKNOWN, "EHLO h.example.test",
        "AUTH PLAIN " + PLAIN_USER, "AUTH CRAM-MD5", "dGVzdA==",
        "AUTH SCRAM-SHA-256 biwsbj11c2VyLHI9ck9wck5HZndFYmVSV2diTkVrcU8=",
        "*", "QUIT"))
    seed(t, "few-mechs-challenge", session(
        TLS_STARTTLS | AUTH_REQUIRED | ABT_CHALLENGE, FEED_LINE | FEW_MECHS,
        "EHLO h.example.test", "AUTH PLAIN " + PLAIN_USER,
        "AUTH LOGIN", "AUTH CRAM-MD5", "*", "QUIT"))
    seed(t, "commands", session(
        TLS_NONE | AUTH_OFF, FEED_SEVEN | DRIVER_CLOSE,
        "HELO old.example.test", "NOOP", "VRFY postmaster", "EXPN staff",
        "HELP", "RSET", "ETRN example.test", "BDAT 10 LAST", "XYZZY",
        "mail from:<A@Example.Test>", "rcpt to:<postmaster>",
        "RCPT TO:<@relay.example:b@example.test>", "DATA", ".",
        "EHLO again.example.test", "AUTH PLAIN " + PLAIN_USER))
    seed(t, "http-request", session(
        TLS_NONE | AUTH_OPTIONAL, FEED_ALL, "GET / HTTP/1.1",
        "Host: mail.example.test", "", ""))
    seed(t, "http-post", session(
        TLS_NONE | AUTH_OPTIONAL, FEED_LINE, "POST /submit HTTP/1.1",
        "Content-Length: 4", "", "QUIT"))
    seed(t, "nul-and-bare-lf", bytes([TLS_NONE | AUTH_OPTIONAL, FEED_ALL]) +
         b"EHLO a\0b.example.test\r\nNOOP\nNOOP\rNOOP\r\n"
         b"AUTH PLAIN AHVzZXIA\0cGVuY2ls\r\nQUIT\r\n")
    seed(t, "long-lines", session(
        TLS_NONE | AUTH_OPTIONAL | SENDER_OFF, FEED_ALL,
        "EHLO " + "a" * 600, "NOOP " + "b" * 20000,
        "AUTH PLAIN " + "A" * 13000, "MAIL FROM:<" + "c" * 300 + "@x>",
        "QUIT"))
    # Challenge mechanisms with the responses our random source makes
    # right (the first AUTH of a session draws the first random bytes).
    r = FuzzRand()
    chal = f"<{int.from_bytes(r.get(8), 'big')}.1700000000@mail.example.test>"
    digest = hmac.new(b"pencil", chal.encode(), hashlib.md5).hexdigest()
    seed(t, "auth-cram-md5", session(
        base, FEED_LINE, "EHLO h.example.test", "AUTH CRAM-MD5",
        b64(f"user {digest}"), *transaction(), "QUIT"))
    r = FuzzRand()
    nonce = b64(r.get(18))
    resp, rspauth = digest_values("user", "mail.example.test", "pencil",
                                  nonce, "OA6MHXh6VqTrRk",
                                  "smtp/mail.example.test")
    seed(t, "auth-digest-md5", session(
        base, FEED_LINE, "EHLO h.example.test", "AUTH DIGEST-MD5",
        b64(f'charset=utf-8,username="user",realm="mail.example.test",'
            f'nonce="{nonce}",nc=00000001,cnonce="OA6MHXh6VqTrRk",'
            f'digest-uri="smtp/mail.example.test",response={resp},'
            f'qop=auth'), "", *transaction(), "QUIT"))
    for hname, mech in (("sha1", "SCRAM-SHA-1"), ("sha256", "SCRAM-SHA-256")):
        r = FuzzRand()
        salt = r.get(16)
        snonce = b64(r.get(18))
        final, _, _ = scram_proofs(hname, "user", "pencil",
                                   "rOprNGfwEbeRWgbNEkqO", snonce, salt,
                                   4096)
        seed(t, f"auth-{mech.lower()}", session(
            base, FEED_LINE, "EHLO h.example.test",
            f"AUTH {mech} " + b64("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"),
            b64(final), "", *transaction(), "QUIT"))
    # RFC 4954 §4: PLAIN with an initial response glued to the next
    # command in one write.
    seed(t, "pipelined-auth", session(
        base, FEED_ALL, "EHLO h.example.test",
        "AUTH PLAIN " + PLAIN_USER, "MAIL FROM:<user@example.test>",
        "RCPT TO:<bob@example.test>", "AUTH LOGIN", "dXNlcg==", "QUIT"))


# --- SMTP client: server scripts -----------------------------------------

# fuzz_smtp_client.c option byte 0 (client) and byte 1 (driver).
STLS_AUTO, STLS_REQUIRED, STLS_NEVER, STLS_IMPLICIT = range(4)
ALLOW_PLAIN, PROBE, TWO_RCPTS = 0x04, 0x40, 0x80
FORCE = {"SCRAM-SHA-256": 1 << 3, "SCRAM-SHA-1": 2 << 3,
         "DIGEST-MD5": 3 << 3, "CRAM-MD5": 4 << 3, "PLAIN": 5 << 3,
         "LOGIN": 6 << 3, None: 0, "none": 7 << 3}
CF_ALL, CF_BYTE, CF_SEVEN, CF_LINE = range(4)
SIZE_8BIT, TWO_PIECES, NULL_SENDER, PARTIAL_RCPT = 0x04, 0x08, 0x10, 0x20
REUSE, RELAY = 0x40, 0x80

GREETING = "220 mail.example.test ESMTP ready"


def ehlo(*keywords):
    kws = ["mail.example.test"] + list(keywords)
    return [f"250-{k}" for k in kws[:-1]] + [f"250 {kws[-1]}"]


EHLO_FULL = ehlo("PIPELINING", "SIZE 10240000", "8BITMIME",
                 "AUTH SCRAM-SHA-256 SCRAM-SHA-1 DIGEST-MD5 CRAM-MD5 "
                 "PLAIN LOGIN", "ENHANCEDSTATUSCODES", "SMTPUTF8")
EHLO_TLS = ehlo("PIPELINING", "SIZE 10240000", "STARTTLS",
                "ENHANCEDSTATUSCODES")
AFTER_AUTH = ["250 2.1.0 Ok", "250 2.1.5 Ok",
              "354 End data with <CR><LF>.<CR><LF>",
              "250 2.0.0 Ok: queued as 4Tq3xZ1AbC", "221 2.0.0 Bye"]


def script(opt0, opt1, *lines):
    return bytes([opt0, opt1]) + "".join(l + "\r\n"
                                         for l in lines).encode("latin-1")


def smtp_client():
    t = "smtp_client"
    ok = "235 2.7.0 Authentication successful"
    seed(t, "plain-full", script(
        STLS_AUTO | ALLOW_PLAIN | FORCE["PLAIN"], CF_LINE, GREETING,
        *EHLO_FULL, ok, *AFTER_AUTH))
    seed(t, "plain-pipelined", script(
        STLS_AUTO | ALLOW_PLAIN | FORCE["PLAIN"] | TWO_RCPTS,
        CF_ALL | SIZE_8BIT, GREETING, *EHLO_FULL, ok, "250 2.1.0 Ok",
        "250 2.1.5 Ok", "550 5.1.1 <carol@example.test>: unknown",
        "354 go ahead", "250 2.0.0 queued", "221 2.0.0 Bye"))
    seed(t, "partial-rcpt", script(
        STLS_AUTO | ALLOW_PLAIN | FORCE["PLAIN"] | TWO_RCPTS,
        CF_SEVEN | PARTIAL_RCPT, GREETING, *EHLO_FULL, ok, "250 2.1.0 Ok",
        "550 5.1.1 <bob@example.test>: unknown", "250 2.1.5 Ok",
        "354 go ahead", "250 2.0.0 queued", "221 2.0.0 Bye"))
    seed(t, "partial-rcpt-none", script(
        STLS_AUTO | ALLOW_PLAIN | FORCE["PLAIN"] | TWO_RCPTS,
        CF_ALL | PARTIAL_RCPT, GREETING, *EHLO_FULL, ok, "250 2.1.0 Ok",
        "450-4.2.1 busy", "450 4.2.1 try later",
        "550 5.1.1 <carol@example.test>: unknown", "221 2.0.0 Bye"))
    # Connection reuse: three messages; the second fails at MAIL (its
    # pipelined RCPTs still answered), so RSET goes before the third.
    seed(t, "reuse-three", script(
        STLS_AUTO | ALLOW_PLAIN | FORCE["PLAIN"], CF_LINE | REUSE,
        GREETING, *EHLO_FULL, ok, *AFTER_AUTH[:4],
        "550 5.7.1 sender refused", "503 5.5.1 need MAIL",
        "503 5.5.1 need MAIL", "250 2.0.0 Ok", "250 2.1.0 Ok",
        "250 2.1.5 Ok", "250 2.1.5 Ok", "354 go", "250 2.0.0 queued",
        "221 2.0.0 Bye"))
    seed(t, "reuse-partial-idle-421", script(
        STLS_AUTO | ALLOW_PLAIN | FORCE["PLAIN"], CF_ALL | REUSE |
        PARTIAL_RCPT, GREETING, *EHLO_FULL, ok, "250 2.1.0 Ok",
        "550 5.1.1 unknown", "421 4.4.2 timeout"))
    seed(t, "reuse-data-refused", script(
        STLS_AUTO | FORCE["none"], CF_SEVEN | REUSE,
        GREETING, *ehlo("SIZE 1000"), "250 2.1.0 Ok", "250 2.1.5 Ok",
        "554 5.5.1 no", "250 2.0.0 Ok", "250 2.1.0 Ok", "250 2.1.5 Ok",
        "250 2.1.5 Ok", "354 go", "452 4.3.1 full", "500 5.5.1 no RSET"))
    # Relay settings: the list picks CRAM-MD5 over SCRAM; with TLS and
    # only PLAIN left, the long initial response waits for "334 ".
    seed(t, "relay-mechs-cram", script(
        STLS_NEVER, CF_LINE | RELAY, GREETING, *EHLO_FULL,
        "334 " + b64(CRAM_CHAL), ok, *AFTER_AUTH))
    seed(t, "relay-plain-deferred-ir", script(
        STLS_IMPLICIT, CF_LINE | RELAY | REUSE | PARTIAL_RCPT, GREETING,
        *ehlo("PIPELINING", "AUTH PLAIN XOAUTH2", "8BITMIME", "SMTPUTF8"),
        "334 ", ok, *AFTER_AUTH[:4], "250 2.1.0 Ok", "250 2.1.5 Ok",
        "550 5.1.1 unknown", "354 go", "250 2.0.0 Ok", "250 2.1.0 Ok",
        "250 2.1.5 Ok", "250 2.1.5 Ok", "354 go", "250 2.0.0 Ok",
        "221 Bye"))
    seed(t, "relay-smtputf8-missing", script(
        STLS_IMPLICIT | FORCE["PLAIN"], CF_LINE | RELAY | REUSE,
        GREETING, *ehlo("PIPELINING", "AUTH PLAIN", "8BITMIME"),
        "334 ", ok, *AFTER_AUTH[:4], "250 2.1.0 Ok", "250 2.1.5 Ok",
        "250 2.1.5 Ok", "354 go", "250 2.0.0 Ok", "221 Bye"))
    seed(t, "relay-no-mech", script(
        STLS_NEVER, CF_ALL | RELAY, GREETING,
        *ehlo("AUTH SCRAM-SHA-256 OAUTHBEARER"), "221 Bye"))
    seed(t, "login-two-step", script(
        STLS_AUTO | ALLOW_PLAIN | FORCE["LOGIN"], CF_SEVEN | TWO_PIECES,
        GREETING, *EHLO_FULL, "334 UGFzc3dvcmQ6", ok, *AFTER_AUTH))
    seed(t, "login-prompts", script(
        STLS_AUTO | ALLOW_PLAIN | FORCE["LOGIN"], CF_LINE, GREETING,
        *EHLO_FULL, "334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6", ok,
        *AFTER_AUTH))
    seed(t, "cram-md5", script(
        STLS_AUTO | FORCE["CRAM-MD5"], CF_BYTE, GREETING, *EHLO_FULL,
        "334 " + b64(CRAM_CHAL), ok, *AFTER_AUTH))
    seed(t, "strongest-refused", script(
        STLS_AUTO, CF_LINE, GREETING, *EHLO_FULL,
        "535 5.7.8 Authentication credentials invalid"))
    seed(t, "starttls-then-plain", script(
        STLS_AUTO | FORCE["PLAIN"], CF_LINE | NULL_SENDER, GREETING,
        *EHLO_TLS, "220 2.0.0 Ready to start TLS", *EHLO_FULL, ok,
        *AFTER_AUTH))
    # RFC 3207 §4.2: a reply glued to the 220 is injected; refuse it.
    seed(t, "starttls-injection", script(
        STLS_AUTO | FORCE["PLAIN"], CF_ALL, GREETING, *EHLO_TLS,
        "220 2.0.0 Ready to start TLS", *EHLO_FULL, ok))
    seed(t, "starttls-required-missing", script(
        STLS_REQUIRED, CF_LINE, GREETING, *EHLO_FULL))
    seed(t, "starttls-refused", script(
        STLS_AUTO | ALLOW_PLAIN, CF_LINE, GREETING, *EHLO_TLS,
        "454 4.7.0 TLS not available", "250 2.1.0 Ok", "250 2.1.5 Ok",
        "354 go", "250 ok", "221 bye"))
    seed(t, "no-plaintext-password", script(
        STLS_NEVER | FORCE["PLAIN"], CF_LINE, GREETING,
        *ehlo("AUTH PLAIN LOGIN")))
    seed(t, "implicit-tls-probe", script(
        STLS_IMPLICIT | PROBE, CF_LINE, GREETING,
        *ehlo("AUTH=LOGIN PLAIN", "AUTH CRAM-MD5", "SIZE", "8BITMIME"),
        "334 " + b64(CRAM_CHAL), ok, "221 bye"))
    seed(t, "no-auth", script(
        STLS_AUTO | FORCE["none"], CF_LINE, GREETING,
        *ehlo("SIZE 1000"), *AFTER_AUTH))
    seed(t, "ehlo-refused-helo", script(
        STLS_AUTO | FORCE["none"], CF_LINE, GREETING,
        "502 5.5.1 EHLO not implemented", "250 mail.example.test",
        *AFTER_AUTH))
    seed(t, "bad-replies", script(
        STLS_AUTO | ALLOW_PLAIN, CF_ALL, "220-mail.example.test",
        "221 mixed codes", "2x0 bad", "250-" + "k" * 3000,
        "250 \x00\x7f"))
    seed(t, "greeting-554", script(STLS_AUTO, CF_LINE,
                                   "554 5.3.2 No service"))
    seed(t, "421-mid-session", script(
        STLS_AUTO | ALLOW_PLAIN | FORCE["PLAIN"], CF_LINE, GREETING,
        *EHLO_FULL, ok, "250 2.1.0 Ok",
        "421 4.4.2 mail.example.test timeout"))
    seed(t, "data-rejected", script(
        STLS_AUTO | ALLOW_PLAIN | FORCE["PLAIN"], CF_LINE, GREETING,
        *EHLO_FULL, ok, "250 2.1.0 Ok", "250 2.1.5 Ok", "354 go",
        "554 5.6.0 Message rejected", "221 bye"))
    # Challenges made right for our random source's client nonces.
    for hname, mech in (("sha1", "SCRAM-SHA-1"), ("sha256", "SCRAM-SHA-256")):
        cnonce = b64(FuzzRand().get(18))
        _, final, first = scram_proofs(hname, "tim", "tanstaaftanstaaf",
                                       cnonce, "srvNonce0123",
                                       b"salt of sixteen!", 4096)
        seed(t, f"{mech.lower()}", script(
            STLS_AUTO | FORCE[mech], CF_LINE, GREETING, *EHLO_FULL,
            "334 " + b64(first), "334 " + b64(final), ok, *AFTER_AUTH))
        seed(t, f"{mech.lower()}-strongest", script(
            STLS_AUTO, CF_LINE, GREETING, *EHLO_FULL, "334 " + b64(first),
            ok))
    cnonce = b64(FuzzRand().get(18))
    _, rspauth = digest_values("tim", "mail.example.test",
                               "tanstaaftanstaaf", "srvNonce0123", cnonce,
                               "smtp/mail.example.test")
    chal = ('realm="mail.example.test",nonce="srvNonce0123",qop="auth",'
            'charset=utf-8,algorithm=md5-sess')
    seed(t, "digest-md5", script(
        STLS_AUTO | FORCE["DIGEST-MD5"], CF_LINE, GREETING, *EHLO_FULL,
        "334 " + b64(chal), "334 " + b64(f"rspauth={rspauth}"), ok,
        *AFTER_AUTH))
    seed(t, "digest-md5-forged", script(
        STLS_AUTO | FORCE["DIGEST-MD5"], CF_LINE, GREETING, *EHLO_FULL,
        "334 " + b64(chal), ok, *AFTER_AUTH))


# --- SMTP server: the unit tests' transcripts -----------------------------

TRANSCRIPTS = os.path.join(HERE, "..", "tests", "unit", "transcripts")


def unescape(text):
    """tests/unit/test_smtp_server.c escapes: \\r \\n \\t \\\\ \\xHH \\{N,c}."""
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            n = text[i + 1]
            if n in "rnt":
                out += {"r": b"\r", "n": b"\n", "t": b"\t"}[n]
                i += 2
            elif n == "x":
                out.append(int(text[i + 2:i + 4], 16))
                i += 4
            elif n == "{":
                end = text.index("}", i)
                count, ch = text[i + 2:end].split(",")
                out += ch.encode() * int(count)
                i = end + 1
            else:
                out += n.encode("latin-1")
                i += 2
        else:
            out += c.encode("latin-1")
            i += 1
    return bytes(out)


def transcript_options(cfg):
    """Option bytes of fuzz_smtp_server.c nearest to a transcript's "@"
    configuration (defaults: no TLS, AUTH optional, before_tls all)."""
    tls = {"none": TLS_NONE, "starttls": TLS_STARTTLS,
           "implicit": TLS_IMPLICIT}[cfg.get("tls", "none")]
    if cfg.get("require_tls") == "1":
        tls = TLS_REQUIRE
    opt0 = tls | {"required": AUTH_REQUIRED, "optional": AUTH_OPTIONAL,
                  "off": AUTH_OFF}[cfg.get("auth", "optional")]
    opt0 |= {"none": ABT_NONE, "challenge": ABT_CHALLENGE,
             "all": ABT_ALL}[cfg.get("before_tls", "all")]
    # A compatibility profile's exceptions: before_tls all with all three.
    if any(k in cfg for k in ("helo_auth", "bare_lf", "long_lines")):
        opt0 |= ABT_COMPAT
    if cfg.get("sender") == "off":
        opt0 |= SENDER_OFF
    if cfg.get("legacy") == "1":
        opt0 |= LEGACY_AUTH
    opt1 = FEED_ALL
    if cfg.get("errors") == "3" or "size" in cfg or "rcpts" in cfg:
        opt1 |= SMALL_LIMITS
    if cfg.get("mechs") in ("CRAM-MD5,PLAIN", "PLAIN,CRAM-MD5"):
        opt1 |= FEW_MECHS
    return bytes([opt0, opt1])


def smtp_transcripts():
    if not os.path.isdir(TRANSCRIPTS):
        return
    for name in sorted(os.listdir(TRANSCRIPTS)):
        if not name.endswith(".txt"):
            continue
        cfg = {}
        body = b""
        with open(os.path.join(TRANSCRIPTS, name), encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\n")
                if line.startswith("@"):
                    for kv in line[1:].split():
                        k, _, v = kv.partition("=")
                        cfg[k] = v
                elif line.startswith("C:"):
                    body += unescape(line[2:].lstrip(" ")) + b"\r\n"
                elif line.startswith("C>"):
                    body += unescape(line[2:].lstrip(" "))
        if body:
            seed("smtp_server", "tx-" + name[:-4],
                 transcript_options(cfg) + body)


# --- base64, user file, credentials, configuration ------------------------

def base64_seeds():
    t = "base64"
    for name, text in (("rfc4954-plain", "dGVzdAB0ZXN0ADEyMzQ="),
                       ("rfc4616-tim", "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"),
                       ("rfc4616-ursel", "VXJzZWwAS3VydAB4aXBqM3BsbXE="),
                       ("login-password", "dGFuc3RhYWZ0YW5zdGFhZg=="),
                       ("rfc4648-foobar", "Zm9vYmFy"),
                       ("one-pad", "Zm9vYg=="), ("empty", ""),
                       ("non-canonical-bits", "Zm9vYh=="),
                       ("pad-inside", "AAA=BBB"), ("pad-first", "=AAA"),
                       ("url-safe", "-_-_"), ("whitespace", "Zm9v\r\nYmFy"),
                       ("cram-challenge", b64(CRAM_CHAL))):
        seed(t, name, text)
    seed(t, "binary", bytes(range(256)))


PASSWD = """\
# postern users (Dovecot passwd-file format)
tim:{PLAIN}tanstaaftanstaaf
user:{SCRAM-SHA-1}4096,QSXCR+Q6sek8bf92,6dlGYMOdZcOPutkcNY8U2g7vK9Y=,\
D+CSWLOshSulAsxiupA+qs2/fTE= {SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ==,\
WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,\
wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=
chris@elwood.innosoft.com:{DIGEST-MD5}eb5a750053e4d2c34aa84bbc9b0b6ee7
printer:{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a3\
54b21152711fb604ca3e035e7015116b:1000:1000::/home/printer::allow_from=\
192.0.2.0/24 nopassword
:skipped
   
locked::::::::
"""

CREDS = {
    "plain": "{PLAIN}pencil",
    "plain-b64": "{PLAIN.b64}cGVuY2ls",
    "clear-lower": "{cleartext}pencil",
    "cram-md5": "{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a3"
                "54b21152711fb604ca3e035e7015116b",
    "hmac-md5-b64": "{HMAC-MD5.b64}" + b64(bytes.fromhex(
        "d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b")),
    "digest-md5": "{DIGEST-MD5}eb5a750053e4d2c34aa84bbc9b0b6ee7",
    "scram-sha1": "{SCRAM-SHA-1}4096,QSXCR+Q6sek8bf92,"
                  "6dlGYMOdZcOPutkcNY8U2g7vK9Y=,D+CSWLOshSulAsxiupA+qs2/fTE=",
    "scram-sha256": "{SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ==,"
                    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
                    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
    "scram-huge-iterations": "{SCRAM-SHA-1}9999999,QSXCR+Q6sek8bf92,"
                             "6dlGYMOdZcOPutkcNY8U2g7vK9Y=,"
                             "D+CSWLOshSulAsxiupA+qs2/fTE=",
    "scram-one-iteration": "{SCRAM-SHA-256}1,W22ZaJ0SNY7soEsUEjb6gQ==,"
                           "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
                           "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
    # crypt(3) values: only their shape matters to the parser.
    "md5-crypt": "{MD5-CRYPT}$1$saltsalt$yIeE3bbh2JQVhFHKJLDY6/",
    "sha512-crypt": "{SHA512-CRYPT}$6$saltsaltsaltsalt$" + "a" * 86,
    "sha256-crypt-rounds": "{SHA256-CRYPT}$5$rounds=999999$salt$" + "b" * 43,
    "blf-crypt": "{BLF-CRYPT}$2y$05$" + "c" * 53,
    "yescrypt": "{CRYPT}$y$j9T$saltsaltsalt$" + "d" * 43,
    "des-crypt": "abJnggxhB/yWI",
    "bsdi-des": "{CRYPT}_J9..CCCCXBrJUJV154M",
    "several": "{PLAIN}pencil {CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a3"
               "54b21152711fb604ca3e035e7015116b {DIGEST-MD5}"
               "eb5a750053e4d2c34aa84bbc9b0b6ee7",
    "unknown-scheme": "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA",
    "hex-suffix": "{PLAIN.hex}70656e63696c",
    "unterminated": "{PLAIN",
    "double-space": "{PLAIN}a  {PLAIN}b",
}

CONFIG = """\
# posternd.conf, as DESIGN.md shows it
hostname  = mail.example.test          # used in 220, EHLO reply, Received
userdb    = passwd-file:/etc/postern/users
mailbox   = maildir:/var/mail/%d/%n
spool     = /var/spool/postern
tls_cert  = /etc/postern/cert.pem
tls_key   = /etc/postern/key.pem
tls_min_version = TLSv1.2
max_message_size = 26214400
sender_check = strict
auth_throttle = yes
auth_throttle_exempt = 127.0.0.0/8 ::1
max_recipients = 100
max_connections = 1000
max_connections_per_ip = 20
max_errors = 10
timeout_command = 300
timeout_data = 180
timeout_final = 600
grace_period = 10
workers = 0
log_level = info
legacy_auth_line = no

[listener submission]
address   = 127.0.0.1:587
tls       = starttls
auth      = required
auth_before_tls = none
mechanisms = SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 DIGEST-MD5 PLAIN LOGIN

[listener submissions]
address   = [::1]:465
tls       = implicit
auth      = required
mechanisms = PLAIN LOGIN

[listener lan]
address   = 192.0.2.10:2525
tls       = none
auth      = optional
auth_before_tls = challenge
mechanisms = CRAM-MD5 DIGEST-MD5
"""


def passwd_seeds():
    t = "passwd"
    seed(t, "users", PASSWD)
    seed(t, "users-crlf", PASSWD.replace("\n", "\r\n"))
    seed(t, "duplicate", "tim:{PLAIN}a\nbob:{PLAIN}b\ntim:{PLAIN}c\n")
    seed(t, "bad-uid", "tim:{PLAIN}a:x:1000\n")
    seed(t, "extra-no-key", "tim:{PLAIN}a::::::=value\n")
    seed(t, "doveadm", "bob:{SHA512-CRYPT}$6$saltsaltsaltsalt$" + "a" * 86 +
         "\nalice:$1$saltsalt$yIeE3bbh2JQVhFHKJLDY6/::::::userdb_quota=1G\n")
    seed(t, "control-char", "tim:{PLAIN}a\x01b\n")
    seed(t, "utf8-names", "j\u00f6rg:{PLAIN}pencil\n\u00e9t\u00e9:{PLAIN}x")
    seed(t, "no-newline-at-end", "tim:{PLAIN}tanstaaftanstaaf")


def cred_seeds():
    for name, text in CREDS.items():
        seed("cred", name, text)


def config_seeds():
    t = "config"
    seed(t, "posternd.conf", CONFIG)
    seed(t, "minimal", "hostname = mail.example.test\n"
         "userdb = passwd-file:/etc/postern/users\n"
         "mailbox = maildir:/var/mail/%u\n"
         "spool = /var/spool/postern\n\n"
         "[listener smtp]\naddress = 0.0.0.0:25\ntls = none\nauth = off\n")
    seed(t, "pgsql", CONFIG.replace("passwd-file:/etc/postern/users",
                                    "pgsql:host=/run/postgresql dbname=mail"))
    seed(t, "errors", "hostname\n[listener]\naddress = 999.0.0.1:99999\n"
         "mechanisms = PLAIN PLAIN FOO\nmax_errors = -1\n")
    seed(t, "traversal", CONFIG.replace("/var/mail/%d/%n",
                                        "/var/mail/../%d/%n"))
    seed(t, "address", "user@Example.Test")
    seed(t, "address-traversal", "../../etc@..")
    seed(t, "cidr", "2001:db8::/32")
    # DESIGN.md "Per-client compatibility profiles".
    seed(t, "profile", CONFIG + "\n[profile scanners]\n"
         "networks  = 192.168.10.0/24 2001:db8:10::/64 ::ffff:10.0.0.0/104\n"
         "listeners = submission\n"
         "tls_min_version = TLSv1\n"
         "auth_before_tls = all\n"
         "helo_auth = yes\n"
         "bare_lf = normalize\n"
         "long_lines = fold\n"
         "add_missing_headers = yes\n"
         "legacy_auth_line = yes\n"
         "[profile everyone]\nnetworks = 0.0.0.0/0 ::/0\n")


# fuzz_mime.c option bits: byte 0, then byte 1.
M_SUBJECT, M_NAME, M_BODY, M_MISSING = 0x04, 0x08, 0x10, 0x20
M_COMPLETE, M_STRIP_BCC = 0x80, 0xC0
M_NO_FROM = 0x10
M_FORM7, M_MEM_BODY, M_SPLIT = 0x20, 0x40, 0x80
M_FROM_NAME = 0x40  # complete mode


def mime(opt0, opt1, *fields):
    return bytes([opt0, opt1]) + SEP.join(
        f.encode() if isinstance(f, str) else f for f in fields)


def compose(name="", subject=None, body=None, to=("bob@example.test",),
            cc=(), attach=(), missing=False, sender="tim@example.test",
            stdin=False, form7=False, split=False):
    """A compose input: attach is a list of (name, content); stdin: the
    body in memory, as standard input gives it; form7: ask for the 7-bit
    form too; split: also split senders ("Name <addr>")."""
    opt0 = len(attach) | (M_SUBJECT if subject is not None else 0) | \
        (M_NAME if name else 0) | (M_BODY if body is not None else 0) | \
        (M_MISSING if missing else 0)
    opt1 = len(to) | len(cc) << 2 | (M_MEM_BODY if stdin else 0) | \
        (M_FORM7 if form7 else 0) | (M_SPLIT if split else 0)
    fields = [sender, name, subject or "", *to, *cc, body or b""]
    for n, data in attach:
        fields += [n, data]
    return mime(opt0, opt1, *fields)


def mime_seeds():
    t = "mime"
    seed(t, "plain", compose(subject="hello", body="hi\n"))
    seed(t, "empty", b"\0\0")
    seed(t, "no-body-no-subject", compose())
    seed(t, "utf8-subject-name", compose(
        name="J\u00f6rg M\u00fcller",
        subject="Scan vom Drucker \u2013 Gr\u00f6\u00dfe \u2713 "
        "\u65e5\u672c\u8a9e and a long tail to fold it",
        body="Gr\u00fc\u00dfe,\nhere is the scan.\n"))
    seed(t, "name-specials", compose(name='Doe, John "JD" \\ (Ops)',
                                     subject="x"))
    seed(t, "name-atoms", compose(name="Tim Smith", subject="atoms"))
    seed(t, "name-leading-space", compose(name=" Tim", subject=""))
    seed(t, "subject-lookalike", compose(subject="=?UTF-8?B?Zm9v?= x"))
    seed(t, "subject-control", compose(subject="tab\there\x01"))
    seed(t, "body-dots", compose(body=".leading dot\n..two dots\n.\n"
                                 "after a lone dot\nlast"))
    seed(t, "body-line-ends", compose(body=b"LF\nCRLF\r\nCR\rCRCRLF\r\r\n"
                                      b"end CR\r"))
    seed(t, "body-8bit", compose(body="Gr\u00fc\u00dfe\n\u20ac\n"))
    seed(t, "body-invalid-utf8", compose(body=b"\xc3\x28 \xfe \xed\xa0\x80\n"))
    seed(t, "body-nul", compose(body=b"a\0b\n"))
    seed(t, "body-stdin", compose(subject="mail -s", stdin=True,
                                  body=b"first\n.dot\nFrom here\nlast"))
    seed(t, "body-stdin-missing-attachment", compose(
        body="text\n", stdin=True, missing=True,
        attach=[("here.txt", b"x"), ("nope.pdf", b"")]))
    seed(t, "qp-text", compose(
        subject="qp", form7=True, stdin=True,
        body=("Gr\u00fc\u00dfe = 100%\nspace at the end \ntab\t\n" +
              "\u00e4" * 40 + "\n.dot\n" + "x" * 80 + "\nno end").encode()))
    seed(t, "qp-line-ends", compose(form7=True, body=b"\xe9\r\xe9\r\n"
                                    b"\xe9\n\r\n \r\t\n=\r"))
    seed(t, "qp-76", compose(form7=True, body=b"y" * 75 + b"\xff\n" +
                             b"z" * 73 + b"= \n" + b"w" * 74 + b"\xc3\xa4"))
    seed(t, "qp-attachments", compose(
        form7=True, subject="s", body="Gr\u00fc\u00dfe\n",
        attach=[("a.txt", b"x"), ("b.bin", b"\0\xff")]))
    seed(t, "qp-not-needed", compose(form7=True, body="ascii =\n"))
    seed(t, "qp-base64-instead", compose(form7=True,
                                         body=b"\xe9" * 999 + b"\n"))
    seed(t, "qp-missing-attachment", compose(
        form7=True, body="\u00e9\n", missing=True,
        attach=[("nope.pdf", b"")]))
    seed(t, "split-name-addr", compose(name="Tim Example <tim@example.test>",
                                       split=True, subject="s"))
    seed(t, "split-quoted", compose(
        name='"Doe, John \\"JD\\"" <"j d"@example.test>  ', split=True))
    seed(t, "split-specials", compose(
        name=' J\u00f6rg "<x>" \\ \t', split=True, subject="x"))
    seed(t, "split-broken", compose(name='Name <addr', split=True))
    seed(t, "split-unclosed", compose(name='"Name <a@b>', split=True))
    seed(t, "split-angle-only", compose(name="<>", split=True,
                                        sender=""))
    seed(t, "stdin-from-name", mime(
        M_COMPLETE, M_FROM_NAME, "tim@example.test",
        b"Subject: named\n\nbody\n", "J\u00f6rg M\u00fcller"))
    seed(t, "stdin-from-name-specials", mime(
        M_COMPLETE, M_FROM_NAME, "tim@example.test",
        b"To: a@example.test\n\nbody\n", 'Doe, John "JD"'))
    seed(t, "stdin-from-name-long", mime(
        M_COMPLETE, M_FROM_NAME, "tim@example.test", b"x\n", "n" * 400))
    seed(t, "stdin-from-name-kept", mime(
        M_COMPLETE, M_FROM_NAME, "tim@example.test",
        b"From: <other@example.test>\n\nbody\n", "Unused"))
    seed(t, "body-stdin-not-missing", compose(body="", stdin=True,
                                              missing=True))
    seed(t, "body-998", compose(body="y" * 998 + "\n" + "z" * 998))
    seed(t, "body-999", compose(body="y" * 999 + "\n"))
    seed(t, "addresses", compose(
        to=("a@example.test", "b@example.test", "c@example.test"),
        cc=("d@example.test", "e@example.test"), subject="cc"))
    seed(t, "empty-sender", compose(sender="", subject="bounce"))
    seed(t, "sender-no-domain", compose(sender="tim@", subject="x"))
    pdf = (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + bytes(range(255)) +
           b"\r\n.\r\n..\n\r.\0\n%%EOF\n")
    seed(t, "attachments", compose(
        subject="scan", body="see attached\n",
        attach=[("scan-0001.pdf", pdf),
                ("Bericht M\u00e4rz \u2013 \u00dcbersicht \u20ac.pdf",
                 b"\x00\x01\x02"),
                ("notes.TXT", b"plain text\n.dot line\n")]))
    seed(t, "attachment-odd-names", compose(
        attach=[('a"b\\c;d=e.txt', b"x"), ("", b""), ("..", b"y" * 58)]))
    seed(t, "attachment-long-name", compose(
        attach=[("\u00e9" * 127 + ".json", b"{}")]))
    seed(t, "missing-attachment", compose(
        attach=[("here.txt", b"x"), ("nope.pdf", b"")], missing=True))
    seed(t, "missing-body", compose(body="", missing=True))
    seed(t, "stdin-dots", mime(
        M_COMPLETE, 0, "tim@example.test",
        b"Subject: dots\nX-Test: one\n\n.leading dot\n..two dots\n.\n"
        b"after a lone dot\nCRLF line\r\nlast"))
    seed(t, "stdin-fixed", mime(
        M_COMPLETE, 0, "tim@example.test",
        b"From: <tim@example.test>\r\nDate: Mon, 02 Feb 2026 10:00:00 "
        b"+0000\r\nMessage-ID: <1@example.test>\r\nSubject: fixed\r\n"
        b"\r\nbody\r\n"))
    seed(t, "stdin-no-header", mime(
        M_COMPLETE, 0, "tim@example.test",
        b"just a body\nno header at all\n"))
    seed(t, "stdin-mbox-from", mime(
        M_COMPLETE, 0, "tim@example.test",
        b"From tim Mon Feb  2 10:00:00 2026\nSubject: x\n\nbody"))
    seed(t, "stdin-bcc", mime(
        M_STRIP_BCC, M_NO_FROM, "tim@example.test",
        b"To: a@example.test\nBcc: secret@example.test,\n"
        b"  other@example.test\nBCC:x@example.test\nSubject: s\n\nbody\n"))
    seed(t, "stdin-recipients", mime(
        M_STRIP_BCC, 0, "tim@example.test",
        b'To: "Doe, John" <john@example.test>, (a, comment) '
        b"bob@example.test\r\nCc: group: a@b.test, c@d.test;\r\n"
        b"Bcc: <e@f.test>\r\n\r\nx"))
    seed(t, "stdin-recipients-quoted", mime(
        M_STRIP_BCC, 0, "tim@example.test",
        b'To: "john doe"@example.test, "Doe, John" <"j@d"@example.test>\n'
        b'Cc: (c, d) "x,y"@e.test, g: "a:b"@c.test, "q\\"(x)"@d.test;\n'
        b'Bcc: <"a>b"@x.test>, broken address@x.test, "unclosed@x\n'
        b"\nbody\n"))
    seed(t, "stdin-header-only", mime(
        M_COMPLETE, 0, "", b"Subject: no body"))


# fuzz_smtp_layer.c: byte 0 qop (bit 0: auth-conf) and feed (bits 1-2),
# byte 1 what the rest is (bits 0-1) and the octet to flip (>> 2).
def smtp_layer():
    t = "smtp_layer"
    session = ["EHLO client.example.test\r\n",
               "MAIL FROM:<tim@example.test>\r\nRCPT TO:<bob@example.test>"
               "\r\nDATA\r\n",
               "Subject: layered\r\n\r\n..a stuffed dot\r\nend\r\n",
               ".\r\nQUIT\r\n"]
    seed(t, "int-whole", bytes([0x00, 0x01]) + SEP.join(
        p.encode() for p in session))
    seed(t, "conf-per-byte", bytes([0x03, 0x01]) + SEP.join(
        p.encode() for p in session))
    seed(t, "int-lines", bytes([0x06, 0x01]) + SEP.join(
        p.encode() for p in session))
    # A flipped octet: the length, the message, the MAC, the type, the
    # sequence number.
    for name, off in (("len", 2), ("msg", 6), ("mac", 30), ("seq", 41)):
        seed(t, "int-flip-" + name,
             bytes([0x00, 0x02 | off << 2]) + session[0].encode())
        seed(t, "conf-flip-" + name,
             bytes([0x01, 0x02 | off << 2]) + session[0].encode())
    seed(t, "raw-clear", bytes([0x00, 0x00]) + session[0].encode())
    seed(t, "raw-huge-length", bytes([0x00, 0x00]) +
         b"\x7f\xff\xff\xffEHLO x\r\n")
    seed(t, "raw-short", bytes([0x02, 0x00]) + b"\x00\x00\x00\x05abcde")
    seed(t, "wrapped-then-raw", bytes([0x04, 0x03]) + SEP.join(
        [session[0].encode(), b"NOOP\r\n"]))


def main():
    sasl_server()
    sasl_client()
    digest_parse()
    scram_parse()
    smtp_server()
    smtp_transcripts()
    smtp_client()
    smtp_layer()
    base64_seeds()
    passwd_seeds()
    cred_seeds()
    config_seeds()
    mime_seeds()
    check = "--check" in sys.argv[1:]
    differ = 0
    for (target, name), data in sorted(SEEDS.items()):
        d = os.path.join(HERE, "corpus", target)
        path = os.path.join(d, name)
        old = None
        if os.path.exists(path):
            with open(path, "rb") as f:
                old = f.read()
        if old == data:
            continue
        differ += 1
        if check:
            print(f"differs: corpus/{target}/{name}")
            continue
        os.makedirs(d, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds, {differ} "
          f"{'differ' if check else 'written'}")
    return 1 if check and differ else 0


if __name__ == "__main__":
    sys.exit(main())
