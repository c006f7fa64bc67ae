// CCrypto: OpenSSL's libcrypto (libssl-dev), for SHA-256 of dump files. Only FileDigest imports this module.
#ifndef KVSTAT_CCRYPTO_SHIM_H
#define KVSTAT_CCRYPTO_SHIM_H
#include <openssl/evp.h>
#endif
