// CFFTW: FFTW3 in single and double precision (libfftw3-dev). Only KVNumerics imports this module.
#ifndef KVSTAT_CFFTW_SHIM_H
#define KVSTAT_CFFTW_SHIM_H
#include <fftw3.h>
static inline unsigned kv_fftw_estimate(void) { return FFTW_ESTIMATE; }
#endif
