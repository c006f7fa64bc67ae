// CHDF5: the HDF5 C API as Swift sees it. HDF5's macros (H5P_DEFAULT, H5T_NATIVE_*, H5F_ACC_*, ...) and
// version-mapped functions do not import into Swift, so each one used is exposed here as a static inline
// function. Only HDF5Kit imports this module.
#ifndef KVSTAT_CHDF5_SHIM_H
#define KVSTAT_CHDF5_SHIM_H

#include <hdf5.h>
#include <stdio.h>
#include <string.h>

static inline hid_t kv_h5p_default(void) { return H5P_DEFAULT; }
static inline hid_t kv_h5s_all(void) { return H5S_ALL; }
static inline hid_t kv_h5e_default(void) { return H5E_DEFAULT; }
static inline unsigned kv_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned kv_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline unsigned kv_h5f_acc_excl(void) { return H5F_ACC_EXCL; }
static inline hsize_t kv_h5s_unlimited(void) { return H5S_UNLIMITED; }
static inline size_t kv_h5t_variable(void) { return H5T_VARIABLE; }

static inline hid_t kv_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t kv_h5t_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t kv_h5t_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t kv_h5t_native_uint8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t kv_h5t_native_uint16(void) { return H5T_NATIVE_UINT16; }
static inline hid_t kv_h5t_c_s1(void) { return H5T_C_S1; }
static inline hid_t kv_h5t_ieee_f32le(void) { return H5T_IEEE_F32LE; }
static inline hid_t kv_h5p_dataset_create(void) { return H5P_DATASET_CREATE; }
static inline hid_t kv_h5p_dataset_access(void) { return H5P_DATASET_ACCESS; }
static inline hid_t kv_h5p_file_access(void) { return H5P_FILE_ACCESS; }
static inline hid_t kv_h5p_link_create(void) { return H5P_LINK_CREATE; }

/// Object type of `name` below `loc` (H5O_TYPE_GROUP, H5O_TYPE_DATASET, ...) or -1. Hides the
/// version-mapped H5Oget_info_by_name macro.
static inline int kv_object_type(hid_t loc, const char *name) {
    H5O_info_t info;
    if (H5Oget_info_by_name(loc, name, &info, H5P_DEFAULT) < 0) return -1;
    return (int)info.type;
}

/// Whether a link `name` exists below `loc`, checking every path component so that a missing
/// intermediate group is "no" instead of an error.
static inline int kv_path_exists(hid_t loc, const char *path) {
    char buf[1024];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return 0;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char saved = buf[i];
            buf[i] = '\0';
            htri_t e = H5Lexists(loc, buf, H5P_DEFAULT);
            buf[i] = saved;
            if (e <= 0) return 0;
            if (saved == '\0') break;
        }
    }
    return 1;
}

typedef struct { char *buf; size_t cap; size_t len; } kv_error_text;

static herr_t kv_error_walk(unsigned n, const H5E_error2_t *e, void *data) {
    kv_error_text *t = (kv_error_text *)data;
    if (t->len + 2 >= t->cap) return 0;
    const char *desc = (e->desc && e->desc[0]) ? e->desc : "(no description)";
    int w = snprintf(t->buf + t->len, t->cap - t->len, "%s%s() %s", n ? "; " : "", e->func_name, desc);
    if (w > 0) t->len += (size_t)w < t->cap - t->len ? (size_t)w : t->cap - t->len - 1;
    return 0;
}

/// Writes the current thread's HDF5 error stack, innermost first, into `buf` as one line.
static inline void kv_error_stack(char *buf, size_t cap) {
    kv_error_text t = { buf, cap, 0 };
    if (cap) buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, kv_error_walk, &t);
}

/// Turns off HDF5's automatic printing of error stacks (errors become Swift errors instead).
static inline void kv_silence_errors(void) {
    H5open();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

#endif
