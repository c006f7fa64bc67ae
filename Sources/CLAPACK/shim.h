// CLAPACK: LAPACKE and CBLAS from OpenBLAS (libopenblas-dev). Only KVNumerics imports this module.
#ifndef KVSTAT_CLAPACK_SHIM_H
#define KVSTAT_CLAPACK_SHIM_H
#include <cblas.h>
#include <lapacke.h>
#endif
