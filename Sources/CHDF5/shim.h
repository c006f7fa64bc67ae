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
static inline hid_t kv_h5t_ieee_f64le(void) { return H5T_IEEE_F64LE; }
/// The little-endian standard integer type of `bits` (8, 16, 32, 64) bits, signed or not; -1 for other widths.
static inline hid_t kv_h5t_std_integer_le(int bits, int is_signed) {
    switch (bits) {
    case 8: return is_signed ? H5T_STD_I8LE : H5T_STD_U8LE;
    case 16: return is_signed ? H5T_STD_I16LE : H5T_STD_U16LE;
    case 32: return is_signed ? H5T_STD_I32LE : H5T_STD_U32LE;
    case 64: return is_signed ? H5T_STD_I64LE : H5T_STD_U64LE;
    default: return -1;
    }
}
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

/// The identity of the open object `obj`: its file number and object address (a token from HDF5 1.12 on),
/// as 24 bytes in `out`. Two links reaching the same object give the same identity. Returns -1 on error.
static inline int kv_object_identity(hid_t obj, unsigned char *out) {
    memset(out, 0, 24);
#if H5_VERSION_GE(1, 12, 0)
    H5O_info2_t info;
    if (H5Oget_info3(obj, &info, H5O_INFO_BASIC) < 0) return -1;
    unsigned long fileno = info.fileno;
    memcpy(out, &fileno, sizeof fileno < 8 ? sizeof fileno : 8);
    memcpy(out + 8, &info.token, sizeof info.token < 16 ? sizeof info.token : 16);
#else
    H5O_info_t info;
    if (H5Oget_info2(obj, &info, H5O_INFO_BASIC) < 0) return -1;
    unsigned long fileno = info.fileno;
    haddr_t addr = info.addr;
    memcpy(out, &fileno, sizeof fileno < 8 ? sizeof fileno : 8);
    memcpy(out + 8, &addr, sizeof addr < 16 ? sizeof addr : 16);
#endif
    return 0;
}

/// Chunks of the chunked dataset `dset` that were ever written (allocated in the file), or -1 on error or
/// when this HDF5 lacks H5Dget_num_chunks (before 1.10.5).
static inline long long kv_allocated_chunks(hid_t dset) {
#if H5_VERSION_GE(1, 10, 5)
    hsize_t n = 0;
    hid_t space = H5Dget_space(dset);
    if (space < 0) return -1;
    herr_t status = H5Dget_num_chunks(dset, space, &n);
    H5Sclose(space);
    return status < 0 ? -1 : (long long)n;
#else
    (void)dset;
    return -1;
#endif
}

/// Stored bytes of the chunk holding element `offset` of `dset`: 0 when that chunk was never written.
static inline long long kv_chunk_bytes(hid_t dset, const hsize_t *offset) {
    hsize_t size = 0;
    if (H5Dget_chunk_storage_size(dset, offset, &size) < 0) return 0;
    return (long long)size;
}

/// Reads the stored (still filtered) bytes of the chunk starting at element `offset` into `buf`, which must hold
/// the chunk's stored size as kv_chunk_bytes gives it (the same index lookup; libhdf5 writes that many bytes
/// whatever the chunk's other metadata says); `filter_mask` receives the chunk's filter mask. Negative on error
/// or before 1.10.3.
static inline herr_t kv_read_chunk(hid_t dset, const hsize_t *offset, unsigned *filter_mask, void *buf) {
#if H5_VERSION_GE(1, 10, 3)
    uint32_t mask = 0;
    herr_t status = H5Dread_chunk(dset, H5P_DEFAULT, offset, &mask, buf);
    *filter_mask = mask;
    return status;
#else
    (void)dset; (void)offset; (void)filter_mask; (void)buf;
    return -1;
#endif
}

/// Whether this HDF5 has H5Dread_chunk, which kv_read_chunk needs (1.10.3 and later).
static inline int kv_raw_chunks_supported(void) { return H5_VERSION_GE(1, 10, 3) ? 1 : 0; }

/// The file descriptor libhdf5's sec2 driver reads the file holding `obj` through, for reads of raw chunk
/// bytes at the addresses kv_chunk_location gives; -1 when the file is opened through another driver (a memory
/// image, family, ...), has a user block (addresses would be relative to it), or on error. The descriptor stays
/// open as long as `obj` (or anything else in the file) is.
static inline int kv_sec2_descriptor(hid_t obj) {
    hid_t file = H5Iget_file_id(obj);
    if (file < 0) return -1;
    int fd = -1;
    hid_t fapl = H5Fget_access_plist(file);
    hid_t fcpl = H5Fget_create_plist(file);
    hsize_t userblock = 1;
    if (fapl >= 0 && fcpl >= 0 && H5Pget_driver(fapl) == H5FD_SEC2 && H5Pget_userblock(fcpl, &userblock) >= 0
        && userblock == 0) {
        void *handle = NULL;
        if (H5Fget_vfd_handle(file, fapl, &handle) >= 0 && handle != NULL) fd = *(int *)handle;
    }
    if (fapl >= 0) H5Pclose(fapl);
    if (fcpl >= 0) H5Pclose(fcpl);
    H5Fclose(file);
    return fd;
}

/// Where the chunk starting at element `offset` of `dset` is stored (H5Dget_chunk_info_by_coord, 1.10.5 and
/// later): its file address, stored size and filter mask. 0 on success; -1 when the chunk was never written, on
/// error, or before 1.10.5.
static inline int kv_chunk_location(hid_t dset, const hsize_t *offset, unsigned *filter_mask,
                                    unsigned long long *address, unsigned long long *size) {
#if H5_VERSION_GE(1, 10, 5)
    unsigned mask = 0;
    haddr_t addr = HADDR_UNDEF;
    hsize_t bytes = 0;
    if (H5Dget_chunk_info_by_coord(dset, offset, &mask, &addr, &bytes) < 0) return -1;
    if (addr == HADDR_UNDEF || bytes == 0) return -1;
    *filter_mask = mask;
    *address = (unsigned long long)addr;
    *size = (unsigned long long)bytes;
    return 0;
#else
    (void)dset; (void)offset; (void)filter_mask; (void)address; (void)size;
    return -1;
#endif
}

/// Whether the dataset creation list `dcpl` stores partial edge chunks unfiltered
/// (H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS): 1 yes, 0 no, -1 on error.
static inline int kv_partial_chunks_unfiltered(hid_t dcpl) {
    unsigned opts = 0;
    if (H5Pget_chunk_opts(dcpl, &opts) < 0) return -1;
    return (opts & H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS) ? 1 : 0;
}

/// 0 not allocated, 1 partly allocated, 2 allocated (H5D_space_status_t), -1 on error.
static inline int kv_space_status(hid_t dset) {
    H5D_space_status_t status;
    if (H5Dget_space_status(dset, &status) < 0) return -1;
    return (int)status;
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
