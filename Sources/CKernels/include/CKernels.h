// CKernels: the vectorised inner loops of kvstat's streaming passes, written in C so that they run at the
// machine's SIMD width in every build (Swift's strict floating-point order keeps its reductions scalar).
// One header per concern; each function documents its maths, its layout and its float rounding.
#ifndef KVSTAT_CKERNELS_H
#define KVSTAT_CKERNELS_H
#include "DCTKernels.h"
#include "MomentKernels.h"
#include "PairKernels.h"
#include "QuantKernels.h"
#endif
